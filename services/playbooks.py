"""Playbooks: operator-written remediation recipes (a YAML file, ALERTPILOT_PLAYBOOKS_FILE) and learned ones,
the first engine of the decision chain (DESIGN §1.3a).

- ``parse_playbooks`` / ``load_playbooks_file`` turn the YAML file into ``PlaybookSpec`` values, or raise
  ``InvalidPlaybooks`` naming the file, the playbook and the field;
- ``similarity`` scores how well a playbook's symptoms fit an incident (pure, documented below);
- ``render_command`` fills a step's placeholders from the incident, every value sanitised as a Kubernetes
  name, so an alert label can never add shell syntax or arguments to a command;
- ``PlaybookService`` keeps the ``playbook`` table in step with the file (``sync``), finds the best
  playbook for an incident (``match``) and lists them for ``/playbooks`` (``listing``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import structlog
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator, model_validator

from services.errors import InvalidPlaybooks
from services.phrases import phrase
from services.ports import IncidentFacts, ProposalDraft
from services.rules import k8s_name, workload_of
from storage.clock import Clock
from storage.db import Database
from storage.errors import WriteConflict
from storage.tables import Playbook, PlaybookSource

log = structlog.get_logger(__name__)

MATCH_THRESHOLD = 0.85
MIN_SUCCESS_RATE = 0.80

WEIGHT_ALERTNAME = 0.45
WEIGHT_SERVICE = 0.20
WEIGHT_SEVERITY = 0.10
WEIGHT_MATCHERS = 0.25

NAME_MAX = 80
DESCRIPTION_MAX = 500
ROOT_CAUSE_MAX = 500
CATEGORY_MAX = 40
STEPS_MAX = 20
STEP_NAME_MAX = 80
COMMAND_MAX = 500
PATTERNS_MAX = 50  # entries per symptoms list
PATTERN_MAX = 200  # characters per entry
DEFAULT_RISK = "medium"
SYNC_ATTEMPTS = 3  # replicas starting together may race on the unique name

PLACEHOLDERS = ("namespace", "service", "alertname", "severity", "workload", "pod")  # and label.<name>
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*")
_GLOB_CHARS = frozenset("*?[")
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_SANE = re.compile(r"[a-z0-9]")  # a value without any of these has no Kubernetes name in it


# --- the model ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    """One Alertmanager label matcher: ``label op value`` with ``op`` one of ``= != =~ !~``. Regexes are
    anchored at both ends, as in Alertmanager. A label the incident lacks counts as the empty string."""

    label: str
    op: str
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``namespace="prod"``, ``pod=~"api-.*"``, ``env!=dev`` (quotes optional). Raises ValueError."""
        found = _MATCHER.fullmatch(text)
        if found is None:
            raise ValueError(
                f"{text!r} is not a matcher such as namespace=\"prod\" (label, then = != =~ or !~, then value)"
            )
        label, op, raw = found.groups()
        value = _unquote(raw)
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(f"(?:{value})")
            except re.error as exc:
                raise ValueError(f"{text!r}: invalid regular expression: {exc}") from None
        return cls(label, op, value, regex)

    def holds(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label) or ""
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        found = self.regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.label}{self.op}"{escaped}"'


def _unquote(raw: str) -> str:
    if not raw.startswith('"'):
        if '"' in raw:
            raise ValueError(f"{raw!r}: unbalanced quotes in the value")
        return raw
    if len(raw) < 2 or not raw.endswith('"') or _escaped_end(raw):
        raise ValueError(f"{raw!r}: the quoted value is not closed")
    out: list[str] = []
    chars = iter(raw[1:-1])
    for ch in chars:
        if ch == '"':
            raise ValueError(f"{raw!r}: a quote inside a quoted value must be escaped as \\\"")
        if ch == "\\":
            nxt = next(chars, "")
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
        else:
            out.append(ch)
    return "".join(out)


def _escaped_end(raw: str) -> bool:
    """Whether the closing quote of ``raw`` is itself escaped (an odd number of backslashes before it)."""
    inner = raw[1:-1]
    return (len(inner) - len(inner.rstrip("\\"))) % 2 == 1


@dataclass(frozen=True)
class Symptoms:
    """What an incident must look like for a playbook to apply (see ``similarity``)."""

    alertnames: tuple[str, ...] = ()  # glob patterns, case-insensitive
    services: tuple[str, ...] = ()  # glob patterns, case-insensitive
    severities: tuple[str, ...] = ()  # lower case
    matchers: tuple[Matcher, ...] = ()

    def to_json(self) -> dict[str, list[str]]:
        return {
            "alertnames": list(self.alertnames),
            "services": list(self.services),
            "severities": list(self.severities),
            "matchers": [str(m) for m in self.matchers],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Symptoms:
        """The ``playbook.symptoms`` column back into Symptoms; raises ValueError on anything malformed."""
        if not isinstance(data, Mapping):
            raise ValueError("symptoms is not a mapping")

        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"symptoms.{key} is not a list of strings")
            return tuple(value)

        return cls(
            alertnames=strings("alertnames"),
            services=strings("services"),
            severities=tuple(s.lower() for s in strings("severities")),
            matchers=tuple(Matcher.parse(m) for m in strings("matchers")),
        )


@dataclass(frozen=True)
class Step:
    name: str
    command: str  # a template: {namespace}, {service}, {alertname}, {severity}, {workload}, {pod}, {label.x}


@dataclass(frozen=True)
class PlaybookSpec:
    """One playbook as the file defines it."""

    name: str
    description: str
    symptoms: Symptoms
    steps: tuple[Step, ...]
    category: str = ""
    risk: str = DEFAULT_RISK
    root_cause: str = ""  # a template, like the commands; empty: "matches playbook <name>"


@dataclass(frozen=True)
class SyncResult:
    added: int = 0
    updated: int = 0  # file playbooks whose definition changed or that were enabled again
    disabled: int = 0  # file playbooks that left the file (kept, with their history)
    unchanged: int = 0
    conflicts: tuple[str, ...] = ()  # names a learned playbook already has: the file's version is skipped

    def __str__(self) -> str:
        text = f"added={self.added} updated={self.updated} disabled={self.disabled} unchanged={self.unchanged}"
        return text + (f" conflicts={','.join(self.conflicts)}" if self.conflicts else "")


# --- parsing --------------------------------------------------------------------------------------------


def _listify(value: Any) -> Any:
    """A single string where a list is expected is a list of one (``alertnames: DiskFull``)."""
    return [value] if isinstance(value, str) else value


Patterns = Annotated[list[str], BeforeValidator(_listify)]


def _check_patterns(values: list[str]) -> list[str]:
    if len(values) > PATTERNS_MAX:
        raise ValueError(f"at most {PATTERNS_MAX} entries")
    for i, value in enumerate(values):
        if not value.strip():
            raise ValueError(f"entry {i} is empty")
        if len(value) > PATTERN_MAX:
            raise ValueError(f"entry {i} is longer than {PATTERN_MAX} characters")
    return [v.strip() for v in values]


class _SymptomsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    alertnames: Patterns = []
    services: Patterns = []
    severities: Patterns = []
    matchers: Patterns = []

    @field_validator("alertnames", "services", "severities")
    @classmethod
    def _patterns(cls, values: list[str]) -> list[str]:
        return _check_patterns(values)

    @field_validator("matchers")
    @classmethod
    def _matchers(cls, values: list[str]) -> list[str]:
        if len(values) > PATTERNS_MAX:
            raise ValueError(f"at most {PATTERNS_MAX} entries")
        return values  # each is parsed (with its index in the error) by _parse_one

    @model_validator(mode="after")
    def _something_to_match(self) -> _SymptomsIn:
        if not self.alertnames and not self.matchers:
            raise ValueError("give alertnames or matchers (or both)")
        return self


class _StepIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = ""
    command: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if len(value) > STEP_NAME_MAX or "\n" in value:
            raise ValueError(f"one line of at most {STEP_NAME_MAX} characters")
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        return check_template(value, limit=COMMAND_MAX)


class _PlaybookIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    description: str = ""
    root_cause: str = ""
    category: str = ""
    risk: Literal["low", "medium", "high"] = DEFAULT_RISK
    symptoms: _SymptomsIn
    steps: list[_StepIn]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        if len(value) > NAME_MAX:
            raise ValueError(f"longer than {NAME_MAX} characters")
        if not _NAME.fullmatch(value):
            raise ValueError("use only letters, digits, '_', '.' and '-'")
        return value

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        if len(value.strip()) > DESCRIPTION_MAX:
            raise ValueError(f"longer than {DESCRIPTION_MAX} characters")
        return value.strip()

    @field_validator("root_cause")
    @classmethod
    def _root_cause(cls, value: str) -> str:
        return check_template(value, limit=ROOT_CAUSE_MAX) if value.strip() else ""

    @field_validator("category")
    @classmethod
    def _category(cls, value: str) -> str:
        value = value.strip()
        if len(value) > CATEGORY_MAX or "\n" in value:
            raise ValueError(f"one line of at most {CATEGORY_MAX} characters")
        return value

    @field_validator("risk", mode="before")
    @classmethod
    def _risk(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[_StepIn]) -> list[_StepIn]:
        if not value:
            raise ValueError("give at least one step")
        if len(value) > STEPS_MAX:
            raise ValueError(f"at most {STEPS_MAX} steps")
        return value


def check_template(template: str, *, limit: int) -> str:
    """A command (or root-cause) template: one non-empty line of at most ``limit`` characters whose
    placeholders are all known. Returns it stripped; raises ValueError."""
    value = template.strip()
    if not value:
        raise ValueError("must not be empty")
    if "\n" in value or "\r" in value:
        raise ValueError("must be a single line")
    if len(value) > limit:
        raise ValueError(f"longer than {limit} characters")
    for found in _PLACEHOLDER.finditer(value):
        if not _known_placeholder(found.group(1)):
            allowed = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {found.group(0)} (use {allowed} or {{label.<name>}})")
    return value


def _known_placeholder(key: str) -> bool:
    if key in PLACEHOLDERS:
        return True
    prefix, _, label = key.partition(".")
    return prefix == "label" and _LABEL_NAME.fullmatch(label) is not None


def parse_playbooks(text: str, source: str) -> list[PlaybookSpec]:
    """The playbooks of a YAML document (``playbooks: [...]``); ``source`` names it in errors. An empty
    document or ``playbooks: []`` gives no playbooks. Raises InvalidPlaybooks."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidPlaybooks(f"{source}: not valid YAML: {_yaml_problem(exc)}") from None
    if document is None:
        return []
    if not isinstance(document, dict):
        raise InvalidPlaybooks(f"{source}: expected a mapping with a 'playbooks' list at the top")
    unknown = sorted(str(k) for k in document if k != "playbooks")
    if unknown:
        raise InvalidPlaybooks(f"{source}: unknown top-level key(s) {', '.join(unknown)} (only 'playbooks')")
    items = document.get("playbooks") or []
    if not isinstance(items, list):
        raise InvalidPlaybooks(f"{source}: playbooks: expected a list of playbooks")
    specs: list[PlaybookSpec] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        spec = _parse_one(item, index, source)
        if spec.name in seen:
            raise InvalidPlaybooks(
                f"{source}: playbook '{spec.name}': name: duplicate (also playbooks[{seen[spec.name]}])"
            )
        seen[spec.name] = index
        specs.append(spec)
    return specs


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else str(problem)


def _parse_one(item: Any, index: int, source: str) -> PlaybookSpec:
    name = item.get("name") if isinstance(item, dict) else None
    where = f"{source}: playbook '{name}'" if isinstance(name, str) and name else f"{source}: playbooks[{index}]"
    if not isinstance(item, dict):
        raise InvalidPlaybooks(f"{where}: expected a mapping (name, symptoms, steps, …)")
    try:
        model = _PlaybookIn.model_validate(item)
    except ValidationError as exc:
        raise InvalidPlaybooks(f"{where}: {_first_error(exc)}") from None
    matchers: list[Matcher] = []
    for i, text in enumerate(model.symptoms.matchers):
        try:
            matchers.append(Matcher.parse(text))
        except ValueError as exc:
            raise InvalidPlaybooks(f"{where}: symptoms.matchers[{i}]: {exc}") from None
    symptoms = Symptoms(
        alertnames=tuple(model.symptoms.alertnames),
        services=tuple(model.symptoms.services),
        severities=tuple(s.lower() for s in model.symptoms.severities),
        matchers=tuple(matchers),
    )
    steps = tuple(Step(s.name or f"step-{i + 1}", s.command) for i, s in enumerate(model.steps))
    return PlaybookSpec(
        name=model.name,
        description=model.description,
        symptoms=symptoms,
        steps=steps,
        category=model.category,
        risk=model.risk,
        root_cause=model.root_cause,
    )


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = ""
    for part in first["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{path}: {message}{more}" if path else f"{message}{more}"


def load_playbooks_file(path: str) -> list[PlaybookSpec]:
    """The playbooks of the YAML file at ``path``; raises InvalidPlaybooks naming the path."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidPlaybooks(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidPlaybooks(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    return parse_playbooks(text, path)


# --- similarity -----------------------------------------------------------------------------------------


def similarity(symptoms: Symptoms, facts: IncidentFacts) -> float:
    """How well an incident fits a playbook's symptoms, from 0 to 1.

    The score is a weighted mean over the components the playbook specifies; a component the playbook
    leaves out counts for nothing either way (score = Σ wᵢ·sᵢ / Σ wᵢ over the specified components):

    - **alertname** (weight 0.45, when `alertnames` is given): 1.0 when the alert name matches one of the
      glob patterns (`*`, `?`, `[…]`, case-insensitive); otherwise the best Jaccard similarity between
      the words of the alert name and those of each pattern without glob characters, words being split
      at case changes, digits and punctuation (`KubePodCrashLooping` → {kube, pod, crash, looping});
    - **service** (weight 0.20, when `services` is given): 1.0 when the incident's service, or its
      `service` or `app` label, matches one of the glob patterns (case-insensitive), else 0;
    - **severity** (weight 0.10, when `severities` is given): 1.0 when the incident's severity is listed
      (case-insensitive), else 0;
    - **matchers** (weight 0.25, when `matchers` is given): the fraction of the matchers that the
      incident's labels satisfy.

    Matchers use Alertmanager syntax and semantics: `=`, `!=`, `=~`, `!~`, the value quoted or not,
    regular expressions anchored at both ends. They see the incident's labels, with `alertname`,
    `namespace`, `service` and `severity` filled in from the incident when a label is absent; a label that
    is still absent counts as the empty string (so `env!="dev"` and `env=""` hold without an `env` label).

    A playbook **matches** when the score is at least 0.85 (`MATCH_THRESHOLD`) and, once it has been
    executed, its success rate (successes / executions) is at least 0.80 (`MIN_SUCCESS_RATE`).

    Examples: a playbook giving all four components, all satisfied, scores 1.0; the same incident with a
    service the playbook does not list scores (0.45 + 0.10 + 0.25) / 1.0 = 0.80 and does not match; a
    playbook with only `alertnames: [KubePodCrashLooping]` scores 1.0 for that alert; with
    `alertnames: [KubePodCrashing]` it scores Jaccard({kube, pod, crash, looping}, {kube, pod, crashing})
    = 2/5 = 0.40 for the same alert.

    The score is rounded to 6 decimal places, so equal fits compare equal.
    """
    labels = incident_labels(facts)
    total = weights = 0.0
    if symptoms.alertnames:
        total += WEIGHT_ALERTNAME * _alertname_score(symptoms.alertnames, labels.get("alertname", ""))
        weights += WEIGHT_ALERTNAME
    if symptoms.services:
        candidates = [s for s in (facts.service, labels.get("service", ""), labels.get("app", "")) if s]
        hit = any(_glob(c, p) for c in candidates for p in symptoms.services)
        total += WEIGHT_SERVICE * (1.0 if hit else 0.0)
        weights += WEIGHT_SERVICE
    if symptoms.severities:
        severity = (facts.severity or labels.get("severity", "")).lower()
        total += WEIGHT_SEVERITY * (1.0 if severity in {s.lower() for s in symptoms.severities} else 0.0)
        weights += WEIGHT_SEVERITY
    if symptoms.matchers:
        held = sum(1 for m in symptoms.matchers if m.holds(labels))
        total += WEIGHT_MATCHERS * held / len(symptoms.matchers)
        weights += WEIGHT_MATCHERS
    if weights == 0:
        return 0.0
    return round(min(1.0, total / weights), 6)


def is_match(score: float, executions: int, successes: int) -> bool:
    """A playbook applies when its similarity reaches MATCH_THRESHOLD and its record is good enough."""
    if score < MATCH_THRESHOLD:
        return False
    return executions <= 0 or successes / executions >= MIN_SUCCESS_RATE


def incident_labels(facts: IncidentFacts) -> dict[str, str]:
    """The incident's labels, with alertname/namespace/service/severity filled in from the facts when absent."""
    labels = {str(k): str(v) for k, v in facts.labels.items() if v is not None}
    for key, value in (
        ("alertname", facts.alertname),
        ("namespace", facts.namespace),
        ("service", facts.service),
        ("severity", facts.severity),
    ):
        if not labels.get(key) and value:
            labels[key] = value
    return labels


def words(text: str) -> set[str]:
    """Lower-case words of a name, split at case changes, digits and punctuation:
    ``KubePodCrashLooping`` → {kube, pod, crash, looping}; ``HTTPServerError`` → {http, server, error}."""
    return {w.lower() for w in _WORDS.findall(text)}


def _alertname_score(patterns: Iterable[str], alertname: str) -> float:
    best = 0.0
    mine = words(alertname)
    for pattern in patterns:
        if alertname and _glob(alertname, pattern):
            return 1.0
        if _GLOB_CHARS.isdisjoint(pattern) and mine:
            theirs = words(pattern)
            if theirs:
                best = max(best, len(mine & theirs) / len(mine | theirs))
    return best


def _glob(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


# --- rendering ------------------------------------------------------------------------------------------


def render_command(template: str, facts: IncidentFacts) -> str | None:
    """Fill ``template``'s placeholders from the incident: ``{namespace}``, ``{service}``, ``{alertname}``,
    ``{severity}``, ``{workload}`` (such as ``deployment/api``), ``{pod}`` and ``{label.<name>}``.

    Every value is sanitised as a Kubernetes name (``k8s_name``; the namespace as a DNS label, without
    dots), so a label can never bring shell syntax or extra arguments into the command; the template
    itself is trusted (the operator wrote it). None when a placeholder has no value for this incident
    (or is unknown): the playbook does not apply to it."""
    labels = incident_labels(facts)
    missing = False

    def value(found: re.Match[str]) -> str:
        nonlocal missing
        filled = _placeholder_value(found.group(1), facts, labels)
        if filled is None:
            missing = True
            return ""
        return filled

    rendered = _PLACEHOLDER.sub(value, template)
    return None if missing else rendered


def _placeholder_value(key: str, facts: IncidentFacts, labels: Mapping[str, str]) -> str | None:
    if key == "workload":
        workload = workload_of({k: v for k, v in labels.items() if _sane(v)})
        return None if workload is None else f"{workload[0]}/{workload[1]}"
    raw: str | None
    if key in ("namespace", "service", "alertname", "severity"):
        raw = getattr(facts, key) or labels.get(key)
    elif key == "pod":
        raw = labels.get("pod")
    elif key.startswith("label.") and _LABEL_NAME.fullmatch(key[6:]):
        raw = labels.get(key[6:])
    else:
        return None
    if not raw or not _sane(raw):
        return None
    return k8s_name(raw, dots=key != "namespace")


def _sane(raw: str) -> bool:
    """Whether the value has anything of a Kubernetes name in it (k8s_name would say "unknown" otherwise)."""
    return _SANE.search(raw.lower()) is not None


# --- the service ----------------------------------------------------------------------------------------


class PlaybookService:
    """The ``playbook`` table: synced from the file, matched against incidents, listed for chat."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db, self._now = db, clock

    async def sync(self, specs: Sequence[PlaybookSpec]) -> SyncResult:
        """Make the file's playbooks the enabled file playbooks, in one transaction: new names are added,
        known ones updated (their executions and successes kept), file playbooks that left the file are
        disabled, never deleted. Learned playbooks are not touched; a file playbook with a learned one's
        name is skipped (reported in ``conflicts``)."""
        for attempt in range(1, SYNC_ATTEMPTS + 1):
            try:
                result = await self._sync_once(specs)
            except WriteConflict:
                if attempt == SYNC_ATTEMPTS:
                    raise
                log.info("playbooks_sync_conflict", attempt=attempt)  # another replica synced at the same time
                continue
            for name in result.conflicts:
                log.warning("playbook_name_taken_by_learned", playbook=name)
            log.info("playbooks_synced", added=result.added, updated=result.updated, disabled=result.disabled)
            return result
        raise AssertionError("unreachable")

    async def _sync_once(self, specs: Sequence[PlaybookSpec]) -> SyncResult:
        now = self._now()
        added = updated = disabled = unchanged = 0
        conflicts: list[str] = []
        async with self._db.write() as tx:
            existing = {row.name: row for row in await tx.playbooks.all()}
            for spec in specs:
                fields = _row_fields(spec)
                row = existing.get(spec.name)
                if row is None:
                    new = Playbook(name=spec.name, source=PlaybookSource.FILE, enabled=True, **fields)
                    new.created_at = new.updated_at = now
                    await tx.playbooks.add(new)
                    added += 1
                elif row.source != PlaybookSource.FILE:
                    conflicts.append(spec.name)
                elif row.enabled and all(getattr(row, k) == v for k, v in fields.items()):
                    unchanged += 1
                else:
                    for key, value in fields.items():
                        setattr(row, key, value)
                    row.enabled = True
                    row.updated_at = now
                    updated += 1
            in_file = {spec.name for spec in specs}
            for row in existing.values():
                if row.source == PlaybookSource.FILE and row.enabled and row.name not in in_file:
                    row.enabled = False
                    row.updated_at = now
                    disabled += 1
        return SyncResult(added, updated, disabled, unchanged, tuple(conflicts))

    async def match(self, facts: IncidentFacts) -> ProposalDraft | None:
        """The best enabled playbook that matches the incident and whose every step renders, as a proposal
        (its first step is the command, the others ``steps``); None when none does. Best: the highest
        similarity, then the most successes, then the oldest."""
        async with self._db.read() as tx:
            rows = await tx.playbooks.enabled()
        best: tuple[float, int, int] | None = None
        chosen: tuple[Playbook, float, list[str]] | None = None
        for row in rows:
            try:
                symptoms = Symptoms.from_json(row.symptoms or {})
            except ValueError as exc:
                log.warning("playbook_symptoms_invalid", playbook=row.name, error=str(exc))
                continue
            score = similarity(symptoms, facts)
            if not is_match(score, row.executions, row.successes):
                continue
            commands = _render_steps(row.steps, facts)
            if commands is None:
                log.info("playbook_not_applicable", playbook=row.name, incident_id=facts.incident_id)
                continue
            assert row.id is not None
            key = (score, row.successes, -row.id)
            if best is None or key > best:
                best, chosen = key, (row, score, commands)
        if chosen is None:
            return None
        row, score, commands = chosen
        root_cause = render_command(row.root_cause, facts) if row.root_cause else None
        log.info("playbook_matched", playbook=row.name, incident_id=facts.incident_id, similarity=score)
        return ProposalDraft(
            source="playbook",
            root_cause=root_cause or phrase("matches playbook %(name)s", name=row.name),
            command=commands[0],
            steps=tuple(commands[1:]),
            risk=row.risk or DEFAULT_RISK,
            category=row.category,
            reasoning=phrase(
                "Playbook '%(name)s' matched with similarity %(score)s; success rate %(successes)s/%(executions)s",
                name=row.name, score=f"{score:.2f}", successes=str(row.successes), executions=str(row.executions),
            ) if row.executions > 0 else phrase(
                "Playbook '%(name)s' matched with similarity %(score)s; no executions yet", name=row.name,
                score=f"{score:.2f}",
            ),
            model=None,
            confidence=None,
            playbook_id=row.id,
            playbook_name=row.name,
        )

    async def listing(self) -> list[dict[str, Any]]:
        """Every playbook for ``/playbooks``, enabled ones first, then by name; JSON-safe values only."""
        async with self._db.read() as tx:
            rows = await tx.playbooks.all()
        rows.sort(key=lambda r: (not r.enabled, r.name))
        return [_listing_item(row) for row in rows]


def _row_fields(spec: PlaybookSpec) -> dict[str, Any]:
    return {
        "description": spec.description,
        "symptoms": spec.symptoms.to_json(),
        "steps": [{"name": s.name, "command": s.command} for s in spec.steps],
        "category": spec.category,
        "risk": spec.risk,
        "root_cause": spec.root_cause,
    }


def _render_steps(steps: Any, facts: IncidentFacts) -> list[str] | None:
    """Every step's command rendered, or None when one does not render (or the stored steps are malformed)."""
    if not isinstance(steps, list) or not steps:
        return None
    commands: list[str] = []
    for step in steps:
        template = step.get("command") if isinstance(step, dict) else None
        if not isinstance(template, str) or not template.strip() or "\n" in template or "\r" in template:
            return None
        rendered = render_command(template.strip(), facts)
        if rendered is None:
            return None
        commands.append(rendered)
    return commands


def _listing_item(row: Playbook) -> dict[str, Any]:
    raw = (row.symptoms or {}).get("alertnames") if isinstance(row.symptoms, dict) else None
    alertnames = [str(a) for a in raw[:3]] if isinstance(raw, list) else []
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "source": str(row.source),
        "enabled": bool(row.enabled),
        "executions": int(row.executions),
        "successes": int(row.successes),
        "success_rate": row.successes / row.executions if row.executions > 0 else None,
        "alertnames": alertnames,
        "steps": len(row.steps) if isinstance(row.steps, list) else 0,
    }
