"""The AI model's side of alertpilot: ask for a proposal as strict JSON, validate it, repair once; write
summaries and answers. Everything the model writes is untrusted text: it is validated and bounded here,
escaped where a template shows it, and a command it proposes is only a proposal.

Prompts live in templates/ai/ (rendered through the ``Prompts`` port). Alert data goes into the prompt as
JSON inside a delimited block the system prompt calls untrusted data; "<" and ">" are escaped in that JSON
so nothing inside it can close the block.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError, field_validator

from services.errors import InvalidModelOutput, ModelError, ToolsUnsupported
from services.investigation import Toolbox, ToolResult
from services.metrics import Metrics
from services.phrases import phrase
from services.ports import ChatModel, IncidentFacts, ModelReply, Prompts, ProposalDraft, ToolCall, ToolChatModel

log = structlog.get_logger(__name__)

RISKS = ("low", "medium", "high")
LIMITS = {"root_cause": 600, "action": 500, "reasoning": 1500}
ANSWER_MAX_CHARS = 12000  # a summary or answer longer than this is cut (three Telegram messages)
PROPOSAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "root_cause": {"type": "string", "description": "the most likely cause, one or two sentences"},
        "action": {"type": "string", "description": "one remediation command, e.g. a kubectl command"},
        "risk": {"type": "string", "enum": list(RISKS)},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "reasoning": {"type": "string", "description": "why, citing the alert data"},
    },
    "required": ["root_cause", "action", "risk", "confidence", "reasoning"],
    "additionalProperties": False,
}
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _bounded(value: Any, limit: int) -> str:
    text = _CONTROL.sub("", str(value if value is not None else "")).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class AIProposal(BaseModel):
    """The model's proposal, validated: strings bounded, confidence clamped to [0, 1], one-line action."""

    root_cause: str
    action: str
    risk: str
    confidence: float
    reasoning: str = ""

    @field_validator("root_cause", "reasoning", mode="before")
    @classmethod
    def _text(cls, value: Any, info: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return _bounded(value, LIMITS[info.field_name])

    @field_validator("root_cause")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("action", mode="before")
    @classmethod
    def _action(cls, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a non-empty string")
        lines = [line for line in value.strip().splitlines() if line.strip()]
        if len(lines) != 1:
            raise ValueError("must be exactly one command on one line")
        command = _CONTROL.sub("", lines[0]).strip().strip("`").strip()
        if len(command) > LIMITS["action"]:
            raise ValueError(f"must be at most {LIMITS['action']} characters")
        return command

    @field_validator("risk", mode="before")
    @classmethod
    def _risk(cls, value: Any) -> str:
        text = str(value or "").strip().lower()
        return text if text in RISKS else "high"  # an unknown risk word is treated as the worst

    @field_validator("confidence", mode="before")
    @classmethod
    def _confidence(cls, value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError("must be a number") from None
        if number != number:  # NaN
            raise ValueError("must be a number")
        return min(1.0, max(0.0, number))


@dataclass(frozen=True)
class AIAnswer:
    """What a model call produced, with what the decision row records about it."""

    model: str
    response_format: str
    prompt_tokens: int | None
    completion_tokens: int | None
    repaired: bool
    latency_ms: int
    draft: ProposalDraft | None = None
    text: str = ""


EVIDENCE_EXCERPT = 300


def _evidence(call: ToolCall, result: ToolResult | None) -> dict[str, Any]:
    """One tool call as the decision records it (and Details shows it)."""
    if result is None:
        return {"tool": call.name, "arguments": call.arguments, "ok": False,
                "refused": phrase("tool-call budget used up"),
                "excerpt": "", "seconds": 0.0, "command": None}
    return {"tool": result.tool, "arguments": result.arguments, "ok": result.ok, "refused": result.refused,
            "excerpt": result.card_excerpt[:EVIDENCE_EXCERPT], "seconds": round(result.seconds, 2),
            "command": result.command}


def prompt_json(data: Any) -> str:
    """Data for a prompt: JSON, with < and > escaped so it cannot close the block that holds it."""
    return (
        json.dumps(data, ensure_ascii=False, indent=1, default=str)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
    )


def parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a model's reply (tolerating a markdown fence around it)."""
    stripped = _FENCE.sub("", text.strip())
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        start, end = stripped.find("{"), stripped.rfind("}")
        if start < 0 or end <= start:
            raise
        value = json.loads(stripped[start : end + 1])
    if not isinstance(value, dict):
        raise ValueError("the reply is JSON but not an object")
    return value


def _sum(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


@dataclass(frozen=True)
class Budget:
    """What one analysis may spend (issue 12): tokens over all its requests (tool loop and repair included),
    and seconds of investigating. When either runs out the model is told to answer now, without tools. The
    tokens are those the server reports (``usage``): a server that reports none is held to the time and
    tool-call budgets only."""

    tokens: int | None = None
    seconds: float | None = None


class _Spend:
    """One analysis' running total against its Budget."""

    def __init__(self, budget: Budget) -> None:
        self._budget = budget
        self.started = time.monotonic()
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None

    def add(self, reply: ModelReply) -> None:
        self.prompt_tokens = _sum(self.prompt_tokens, reply.prompt_tokens)
        self.completion_tokens = _sum(self.completion_tokens, reply.completion_tokens)

    @property
    def tokens(self) -> int:
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    def exhausted(self) -> str | None:
        """"tokens" or "seconds" when that budget is used up, else None."""
        if self._budget.tokens is not None and self.tokens >= self._budget.tokens:
            return "tokens"
        if self._budget.seconds is not None and time.monotonic() - self.started >= self._budget.seconds:
            return "seconds"
        return None


class AIAdvisor:
    """Proposals, summaries and answers from one ChatModel. Raises services.errors.ModelError subclasses
    (ModelTimeout, ModelUnavailable, InvalidModelOutput); never anything else from the model's side."""

    def __init__(
        self, model: ChatModel, prompts: Prompts, metrics: Metrics, *, toolbox: Toolbox | None = None,
        max_tool_calls: int = 0, budget: Budget | None = None, language: str = "English",
    ) -> None:
        """``toolbox``/``max_tool_calls``: when the model can call tools, it may make up to that many read-only
        calls (services/investigation.py) before it proposes; a server without tools gets the single-shot
        prompt. ``budget``: tokens and seconds one analysis may spend (unlimited when None). ``language``: what
        the model writes its prose in (services/languages.py MODEL_LANGUAGES; ``write`` may ask for another)."""
        self._model, self._prompts, self._metrics = model, prompts, metrics
        self._toolbox, self._max_tool_calls = toolbox, max_tool_calls
        self._budget = budget or Budget()
        self._language = language

    @property
    def model_name(self) -> str:
        return self._model.name

    async def propose(
        self, facts: IncidentFacts, *, knowledge: list[dict[str, Any]], history: list[dict[str, Any]]
    ) -> AIAnswer:
        data = {
            "alert": {
                "alertname": facts.alertname,
                "severity": facts.severity,
                "service": facts.service,
                "namespace": facts.namespace,
                "labels": facts.labels,
                "annotations": facts.annotations,
            },
            "alerts": facts.alerts[:10],
            "recent_history": history,
            "knowledge_base": knowledge,
        }
        messages = [
            {"role": "system", "content": self._prompts.prompt("propose_system", language=self._language)},
            {"role": "user", "content": self._prompts.prompt("propose", data=prompt_json(data))},
        ]
        started = time.monotonic()
        try:
            answer = await self._propose(messages)
        except ModelError as exc:
            self._observe("propose", started, exc.reason)
            raise
        except asyncio.CancelledError:  # shutdown, or a caller's deadline: still a request that got no answer
            self._observe("propose", started, "timeout")
            raise
        self._observe("propose", started, "repaired" if answer.repaired else "ok")
        return answer

    def _tool_model(self) -> ToolChatModel | None:
        model = self._model
        if self._toolbox is None or self._max_tool_calls <= 0 or not self._toolbox.definitions():
            return None
        if not hasattr(model, "complete_with_tools") or getattr(model, "supports_tools", None) is False:
            return None
        return model  # type: ignore[return-value]

    async def _propose(self, messages: list[dict[str, str]]) -> AIAnswer:
        spend = _Spend(self._budget)
        try:
            return await self._spending(messages, spend)
        finally:  # what every analysis spent, the runaways and failures included
            self._metrics.observe("alertpilot_ai_analysis_tokens", spend.tokens)

    async def _spending(self, messages: list[dict[str, str]], spend: _Spend) -> AIAnswer:
        evidence: list[dict[str, Any]] = []
        tool_model = self._tool_model()
        reply: ModelReply | None = None
        if tool_model is not None:
            try:
                reply = await self._investigate(tool_model, messages, evidence, spend)
            except ToolsUnsupported:
                log.info("ai_tools_unsupported", model=self._model.name)  # the single-shot prompt instead
        if reply is None:
            reply = await self._complete(messages, spend)
        try:
            proposal = self._validated(reply)
            repaired, final = False, reply
        except (ValueError, ValidationError) as exc:
            log.info("ai_output_invalid", error=_bounded(exc, 300), finish_reason=reply.finish_reason)
            if spend.exhausted() == "tokens":  # no repair on an empty purse: the rules answer
                raise InvalidModelOutput(phrase("invalid, and the token budget (%(tokens)s) is spent: %(error)s",
                                                tokens=str(self._budget.tokens), error=_bounded(exc, 300))) from None
            repair = [
                *messages,
                {"role": "assistant", "content": _bounded(reply.text, 4000)},
                {"role": "user", "content": self._prompts.prompt("repair", error=_bounded(exc, 500))},
            ]
            final = await self._complete(repair, spend)
            try:
                proposal = self._validated(final)
            except (ValueError, ValidationError) as again:
                raise InvalidModelOutput(phrase("invalid after one repair attempt: %(error)s",
                                                error=_bounded(again, 300))) from None
            repaired = True
        draft = ProposalDraft(
            source="ai",
            model=final.model or self._model.name,
            root_cause=proposal.root_cause,
            command=proposal.action,
            risk=proposal.risk,
            reasoning=proposal.reasoning,
            confidence=proposal.confidence,
            evidence=tuple(evidence),
        )
        return AIAnswer(
            model=draft.model or self._model.name,
            response_format=final.response_format,
            prompt_tokens=spend.prompt_tokens,
            completion_tokens=spend.completion_tokens,
            repaired=repaired,
            latency_ms=int((time.monotonic() - spend.started) * 1000),
            draft=draft,
        )

    async def _complete(self, messages: list[dict[str, str]], spend: _Spend) -> ModelReply:
        reply = await self._model.complete(messages, json_schema=PROPOSAL_SCHEMA)
        self._count_tokens(reply)
        spend.add(reply)
        return reply

    async def _investigate(
        self, model: ToolChatModel, messages: list[dict[str, str]], evidence: list[dict[str, Any]], spend: _Spend
    ) -> ModelReply:
        """The tool loop: the model calls read-only tools (each checked by the toolbox: anything not read-only
        is refused back to it and nothing runs), then answers with the proposal JSON. The calls are recorded in
        ``evidence``. When a budget runs out — ``max_tool_calls`` calls, the tokens, the seconds — the model is
        told to answer now and offered no tools; one that still calls tools is cut off: its best answer so far
        (a valid proposal it wrote beside a tool call), else InvalidModelOutput (the rules answer)."""
        assert self._toolbox is not None
        system = messages[0]["content"] + "\n\n" + self._prompts.prompt("investigate", max_calls=self._max_tool_calls)
        conversation: list[dict[str, Any]] = [{"role": "system", "content": system}, *messages[1:]]
        used, turns, cut, best = 0, 0, None, None
        while True:
            if cut is None:  # refused calls do not count as used, so the turns are bounded too
                cut = "tool_calls" if max(used, turns) >= self._max_tool_calls else spend.exhausted()
                if cut is not None:
                    self._metrics.inc("alertpilot_ai_budget_cutoffs_total", budget=cut)
                    log.info("ai_budget_cutoff", model=self._model.name, budget=cut, tool_calls=used, tokens=spend.tokens)
                    conversation.append({"role": "user", "content": self._prompts.prompt("answer_now", budget=cut)})
            reply = await model.complete_with_tools(conversation, [] if cut else self._toolbox.definitions())
            self._count_tokens(reply)
            spend.add(reply)
            if not reply.tool_calls:
                return reply
            if reply.text.strip() and self._usable(reply):
                best = reply  # a proposal written beside a tool call: kept in case the model runs away
            if cut is not None:  # told to answer, offered no tools, and still calling them: a runaway
                if best is not None:
                    log.info("ai_runaway_best_answer", model=self._model.name, tool_calls=used)
                    return best
                raise InvalidModelOutput(phrase(
                    "still calling tools after the %(budget)s budget ran out (%(calls)s calls made)",
                    budget=cut, calls=str(used)))
            turns += 1
            conversation.append(reply.assistant_message())
            for call in reply.tool_calls:
                result = await self._tool_result(call, used)
                used += result is not None and result.refused is None
                evidence.append(_evidence(call, result))
                conversation.append(call.result_message(result.content if result is not None else
                                                        "refused: the tool-call budget is used up; answer now"))

    @staticmethod
    def _usable(reply: ModelReply) -> bool:
        try:
            AIProposal.model_validate(parse_json_object(reply.text))
        except (ValueError, ValidationError):
            return False
        return True

    def _tool_label(self, name: str | None) -> str:
        """A tool name as a metric label: the model may invent names, so unknown ones are not kept apart."""
        return name if self._toolbox is not None and name in self._toolbox.names else "other"

    async def _tool_result(self, call: ToolCall, used: int) -> ToolResult | None:
        assert self._toolbox is not None
        if used >= self._max_tool_calls:
            self._metrics.inc("alertpilot_ai_tool_calls_total", tool=self._tool_label(call.name), outcome="over_budget")
            return None
        if not call.ok:
            self._metrics.inc("alertpilot_ai_tool_calls_total", tool=self._tool_label(call.name), outcome="refused")
            return ToolResult(tool=call.name or "?", arguments={}, ok=False, excerpt="", card_excerpt="", seconds=0.0,
                              refused=call.error or phrase("unusable call"))
        result = await self._toolbox.call(call.name, call.arguments)
        outcome = "refused" if result.refused is not None else "ok" if result.ok else "failed"
        self._metrics.inc("alertpilot_ai_tool_calls_total", tool=self._tool_label(result.tool), outcome=outcome)
        if result.refused is None:
            self._metrics.observe("alertpilot_ai_tool_seconds", result.seconds, tool=self._tool_label(result.tool))
        return result

    @staticmethod
    def _validated(reply: ModelReply) -> AIProposal:
        if reply.finish_reason == "length":
            # A cut-off reply may still parse (a closing brace in a string); never trust half an answer.
            raise ValueError("the reply was cut off (finish_reason=length); answer shorter")
        return AIProposal.model_validate(parse_json_object(reply.text))

    async def write(
        self, purpose: str, data: dict[str, Any], *, question: str = "", language: str | None = None
    ) -> AIAnswer:
        """A free-text answer: ``purpose`` is "summary" (of one incident) or "ask" (a question), in ``language``
        (the asking chat's; default: the advisor's)."""
        messages = [
            {"role": "system", "content": self._prompts.prompt("assistant_system", language=language or self._language)},
            {"role": "user", "content": self._prompts.prompt(purpose, data=prompt_json(data), question=prompt_json(question))},
        ]
        started = time.monotonic()
        try:
            reply = await self._model.complete(messages, max_tokens=1200)
            text = _bounded(reply.text, ANSWER_MAX_CHARS)
            if not text:
                raise InvalidModelOutput(phrase("the model answered with no text"))
        except ModelError as exc:
            self._observe(purpose, started, exc.reason)
            raise
        except asyncio.CancelledError:  # the assistant's budget ran out (asyncio.timeout cancels us)
            self._observe(purpose, started, "timeout")
            raise
        self._count_tokens(reply)
        self._observe(purpose, started, "ok")
        return AIAnswer(
            model=reply.model or self._model.name,
            response_format=reply.response_format,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            repaired=False,
            latency_ms=int((time.monotonic() - started) * 1000),
            text=text,
        )

    def _observe(self, purpose: str, started: float, outcome: str) -> None:
        self._metrics.observe("alertpilot_ai_latency_seconds", time.monotonic() - started, purpose=purpose)
        self._metrics.inc("alertpilot_ai_requests_total", purpose=purpose, outcome=outcome)

    def _count_tokens(self, reply: ModelReply) -> None:
        if reply.prompt_tokens:
            self._metrics.inc("alertpilot_ai_tokens_total", reply.prompt_tokens, kind="prompt")
        if reply.completion_tokens:
            self._metrics.inc("alertpilot_ai_tokens_total", reply.completion_tokens, kind="completion")
