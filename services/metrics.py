"""Process metrics in the Prometheus text format (GET /metrics). One ``Metrics`` per app, built in the
composition root and handed to the services that count things; with several replicas Prometheus sums them.

Families are declared up front (name, help, label names) so /metrics lists them from the start, at zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
TOKEN_BUCKETS = (500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000)
TOOL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class _Family:
    name: str
    help: str
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    values: dict[tuple[str, ...], float] = field(default_factory=dict)  # counter value / histogram sum
    counts: dict[tuple[str, ...], list[int]] = field(default_factory=dict)  # histogram: per bucket, then +Inf


class Metrics:
    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}
        self.counter("alertpilot_decisions_total", "Decisions by the engine that answered and why others did not",
                     ("source", "fallback_reason"))
        self.counter("alertpilot_ai_requests_total", "Requests to the AI model by purpose and outcome",
                     ("purpose", "outcome"))
        self.histogram("alertpilot_ai_latency_seconds", "AI model latency per request (including the repair attempt)",
                       ("purpose",), LATENCY_BUCKETS)
        self.counter("alertpilot_ai_late_answers_total", "AI answers that arrived after the decision SLA", ())
        self.counter("alertpilot_ai_tokens_total", "Tokens the AI model reported", ("kind",))
        # deep analysis (issue 12): budgets per analysis, what the analyses spent, the tools they called
        self.gauge("alertpilot_ai_budget", "Configured limit per analysis (tokens, seconds, tool_calls)", ("budget",))
        self.counter("alertpilot_ai_budget_cutoffs_total",
                     "Analyses told to answer now because a budget ran out", ("budget",))
        self.histogram("alertpilot_ai_analysis_tokens", "Tokens one analysis used (tool loop and repair included)",
                       (), TOKEN_BUCKETS)
        self.counter("alertpilot_ai_tool_calls_total", "Read-only tool calls the AI model asked for, by outcome",
                     ("tool", "outcome"))
        self.histogram("alertpilot_ai_tool_seconds", "Duration of the read-only tool calls", ("tool",), TOOL_BUCKETS)
        self.counter("alertpilot_ai_consensus_total", "Consensus analyses by agreement (full, partial, none)",
                     ("agreement",))

    def counter(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        self._families.setdefault(name, _Family(name, help_text, "counter", tuple(labels)))

    def gauge(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        self._families.setdefault(name, _Family(name, help_text, "gauge", tuple(labels)))

    def set(self, name: str, value: float, **labels: str) -> None:
        family = self._families[name]
        family.values[self._key(family, labels)] = value

    def histogram(self, name: str, help_text: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        self._families.setdefault(name, _Family(name, help_text, "histogram", tuple(labels), tuple(sorted(buckets))))

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        family = self._families[name]
        key = self._key(family, labels)
        family.values[key] = family.values.get(key, 0.0) + amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        family = self._families[name]
        key = self._key(family, labels)
        counts = family.counts.setdefault(key, [0] * (len(family.buckets) + 1))
        for index, bound in enumerate(family.buckets):
            if value <= bound:
                counts[index] += 1
        counts[-1] += 1
        family.values[key] = family.values.get(key, 0.0) + value

    def value(self, name: str, **labels: str) -> float:
        """A counter's value, or a histogram's observation count (for tests and reports)."""
        family = self._families[name]
        key = self._key(family, labels)
        if family.kind == "histogram":
            return float(family.counts.get(key, [0])[-1])
        return family.values.get(key, 0.0)

    def render(self) -> str:
        lines: list[str] = []
        for family in self._families.values():
            lines.append(f"# HELP {family.name} {family.help}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            if family.kind in ("counter", "gauge"):
                if not family.values and not family.labels:
                    lines.append(f"{family.name} 0")
                for key, value in sorted(family.values.items()):
                    lines.append(f"{family.name}{_labels(family.labels, key)} {_number(value)}")
                continue
            for key, counts in sorted(family.counts.items()):
                for bound, count in zip(family.buckets, counts, strict=False):
                    le = _labels((*family.labels, "le"), (*key, _number(bound)))
                    lines.append(f"{family.name}_bucket{le} {count}")
                lines.append(f"{family.name}_bucket{_labels((*family.labels, 'le'), (*key, '+Inf'))} {counts[-1]}")
                lines.append(f"{family.name}_sum{_labels(family.labels, key)} {_number(family.values[key])}")
                lines.append(f"{family.name}_count{_labels(family.labels, key)} {counts[-1]}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _key(family: _Family, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(family.labels):
            raise ValueError(f"{family.name} takes labels {family.labels}, got {tuple(labels)}")
        return tuple(str(labels[name]) for name in family.labels)


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    escaped = (v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, escaped, strict=True)) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(value)
