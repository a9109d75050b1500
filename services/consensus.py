"""Consensus for critical incidents (issue 12): several independent analyses, compared on what they would do.

A *panel* is several models, or one model sampled several times (``ALERTPILOT_CONSENSUS_MODELS``). Each
member proposes on its own; the proposals are compared on the normalised command — verb, resource(s) and
namespace, as services/safety.py parses them (``deploy/api`` and ``deployment api`` are the same resource;
``--replicas=3`` and ``--replicas=5`` on the same deployment are the same remediation). The largest group
wins (a tie goes to the group of the member listed first); the card shows its proposal and "2/3 agree".

Disagreement never lowers safety: services/policy.py raises the tier to that of the most dangerous proposal
that got a vote, and auto-remediation needs every member to agree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from services.phrases import phrase
from services.ports import ProposalDraft
from services.safety import UnsafeCommand, parse_command

MAX_PANEL = 7
SAMPLE_TEMPERATURE = 0.7  # several samples of one model: without some temperature they would all be the same
_ENTRY = re.compile(r"(?P<model>[^\s@*]+(?:@(?!https?://)[^\s@*]+)*)(?:@(?P<url>https?://[^\s*]+))?(?:\*(?P<n>\d+))?")


@dataclass(frozen=True)
class PanelMember:
    """One analysis of the panel: a model (at the main AI server, or its own ``base_url``), and which sample."""

    model: str
    base_url: str | None = None
    sample: int = 0  # 1, 2, … when the entry asked for several samples of this model; 0 for a single one

    @property
    def label(self) -> str:
        return f"{self.model} #{self.sample}" if self.sample else self.model


def parse_panel(value: str) -> tuple[PanelMember, ...]:
    """``ALERTPILOT_CONSENSUS_MODELS``: comma-separated ``model``, ``model*3`` (three samples of it) or
    ``model@http://host:port/v1`` (a model on another OpenAI-compatible server). ValueError says what is wrong."""
    members: list[PanelMember] = []
    for raw in (item.strip() for item in value.split(",")):
        if not raw:
            continue
        match = _ENTRY.fullmatch(raw)
        if match is None:
            raise ValueError(f"not a model entry: {raw!r} (model, model*3 or model@http://host:port/v1)")
        if "://" in match["model"]:  # m@htp://… or m@ftp://…: a mistyped server, not a model name
            raise ValueError(f"{raw!r}: a model's server must be an http(s) URL (model@http://host:port/v1)")
        samples = int(match["n"]) if match["n"] else 1
        if not 1 <= samples <= MAX_PANEL:
            raise ValueError(f"{raw!r}: between 1 and {MAX_PANEL} samples")
        url = match["url"].rstrip("/") if match["url"] else None
        members += [PanelMember(match["model"], url, i if samples > 1 else 0) for i in range(1, samples + 1)]
    if len(members) == 1:
        raise ValueError("a consensus needs at least two analyses (e.g. model-a,model-b or model*3)")
    if len(members) > MAX_PANEL:
        raise ValueError(f"at most {MAX_PANEL} analyses in all, got {len(members)}")
    if len({m.label + (m.base_url or "") for m in members}) != len(members):
        raise ValueError("a model is listed twice (use model*N for several samples of one model)")
    return tuple(members)


def command_key(command: str, *, allowed_tools: frozenset[str]) -> tuple[str, ...]:
    """What a proposal would do, for comparing proposals: (tool, verb, resources, namespace). A command the
    policy cannot parse is compared as its whitespace-normalised text."""
    try:
        spec = parse_command(command, allowed_tools=allowed_tools)
    except UnsafeCommand:
        return ("text", " ".join(command.split()).lower())
    resources = ",".join(sorted(spec.resources)) or (f"{spec.kind}/{spec.name}" if spec.kind else "")
    namespace = "*" if spec.all_namespaces else (spec.namespace or "")
    return (spec.tool, spec.verb, resources, namespace)


@dataclass(frozen=True)
class Vote:
    """One panel member's analysis: its proposal, or why it has none (``error``: timeout, unavailable, …)."""

    member: PanelMember
    draft: ProposalDraft | None = None
    error: str | None = None


@dataclass(frozen=True)
class Consensus:
    chosen: ProposalDraft  # the agreed proposal, with its ``consensus`` record filled in
    agree: int
    of: int
    agreeing: tuple[Vote, ...]
    dissenting: tuple[Vote, ...]  # answered, with another remediation
    silent: tuple[Vote, ...]  # no usable answer (timeout, error)

    @property
    def full(self) -> bool:
        return self.agree == self.of


def tally(votes: Sequence[Vote], *, allowed_tools: frozenset[str]) -> Consensus | None:
    """The panel's verdict, or None when no member answered. Groups keep the panel's order, so a tie goes
    to the group of the member listed first."""
    answered = [v for v in votes if v.draft is not None]
    if not answered:
        return None
    groups: dict[tuple[str, ...], list[Vote]] = {}
    for vote in answered:
        assert vote.draft is not None
        groups.setdefault(command_key(vote.draft.command, allowed_tools=allowed_tools), []).append(vote)
    winner = max(groups.values(), key=len)  # max keeps the first of equal lengths
    dissenting = tuple(v for v in answered if v not in winner)
    silent = tuple(v for v in votes if v.draft is None)
    lead = winner[0].draft
    assert lead is not None
    confidences = [v.draft.confidence for v in winner if v.draft is not None and v.draft.confidence is not None]
    record = {
        "agree": len(winner),
        "of": len(votes),
        "votes": [_vote_json(v, v in winner) for v in votes],
    }
    chosen = replace(lead, confidence=min(confidences) if confidences else lead.confidence, consensus=record)
    return Consensus(chosen, len(winner), len(votes), tuple(winner), dissenting, silent)


def _vote_json(vote: Vote, agrees: bool) -> dict[str, Any]:
    if vote.draft is None:
        return {"member": vote.member.label, "agrees": False, "error": vote.error or phrase("no answer")}
    d = vote.draft
    return {"member": vote.member.label, "model": d.model, "agrees": agrees, "command": d.command,
            "root_cause": d.root_cause, "risk": d.risk, "confidence": d.confidence, "tool_calls": len(d.evidence)}


def voted_commands(record: dict[str, Any] | None) -> list[str]:
    """The commands of a consensus record's votes that did not agree with the chosen one (the dissent)."""
    if not record:
        return []
    return [v["command"] for v in record.get("votes", []) if isinstance(v, dict) and not v.get("agrees")
            and isinstance(v.get("command"), str)]
