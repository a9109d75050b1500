"""Process metrics in the Prometheus text format (GET /metrics). One ``Metrics`` per app, built in the
composition root and handed to the services that count things; with several replicas Prometheus sums them.

Families are declared up front (name, help, label names) so /metrics lists them from the start, at zero.
Labels are keyword arguments (the family name and the value are positional-only, so any label name works).

The state of the shared database (incidents by status, the outbox's backlog, running executions) is not a
process counter: ``read_state`` reads it at scrape time, so every replica reports the same database-wide
value (alert rules take ``max()`` of those, never ``sum()``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from storage.db import Database
from storage.tables import IncidentStatus

log = structlog.get_logger(__name__)

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
DECISION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
STATE_TIMEOUT_SECONDS = 5.0  # a scrape does not wait longer for the database: it answers with database_up 0
# The families read from the database at scrape time (the same value on every replica).
STATE_GAUGES = (
    "alertpilot_incidents",
    "alertpilot_outbox_pending_messages",
    "alertpilot_outbox_oldest_pending_age_seconds",
    "alertpilot_executions_running",
    "alertpilot_telegram_updates_unprocessed",
    "alertpilot_telegram_oldest_unprocessed_age_seconds",
)
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
        # issue 8: the pipeline from webhook to chat and execution (per process; Prometheus sums replicas)
        self.counter("alertpilot_alerts_received_total",
                     "Alerts in accepted webhook requests, by webhook kind (alertmanager, grafana, generic)", ("kind",))
        self.counter("alertpilot_alerts_deduplicated_total",
                     "Received alerts that repeat one already stored and firing (no change to any incident)", ("kind",))
        self.counter("alertpilot_alerts_rejected_total",
                     "Webhook requests refused, by kind and reason (auth, forbidden, replay, too_large, bad_json, "
                     "invalid, storage)", ("kind", "reason"))
        self.histogram("alertpilot_decision_latency_seconds",
                       "Time from the start of a decision to its proposal, by the engine that answered", ("source",),
                       DECISION_BUCKETS)
        self.counter("alertpilot_outbox_sends_total",
                     "Outbox send attempts by channel and result (sent, transient_error, rate_limited, failed)",
                     ("channel", "result"))
        self.counter("alertpilot_storm_folded_total",
                     "First cards an alert storm folded into a digest instead of sending, by channel", ("channel",))
        self.counter("alertpilot_executions_total",
                     "Executions finished, by result (succeeded, failed, rolled_back, interrupted) and dry run",
                     ("result", "dry_run"))
        self.counter("alertpilot_job_runs_total",  # label "name", not "job": Prometheus sets "job" on every target
                     "Scheduled job runs by job name and outcome (ok, error, skipped)", ("name", "outcome"))
        # read from the database at scrape time (read_state): the same value on every replica
        self.gauge("alertpilot_incidents", "Incidents in the database by status (database-wide)", ("status",))
        self.gauge("alertpilot_outbox_pending_messages",
                   "Outbox messages not delivered yet (pending or being sent), by channel (database-wide)",
                   ("channel",))
        self.gauge("alertpilot_outbox_oldest_pending_age_seconds",
                   "Age of the oldest undelivered outbox message, by channel; 0 when none (database-wide)",
                   ("channel",))
        self.gauge("alertpilot_executions_running", "Executions running now (database-wide)", ())
        self.gauge("alertpilot_telegram_updates_unprocessed",
                   "Telegram updates acknowledged in webhook mode and not processed yet (database-wide)", ())
        self.gauge("alertpilot_telegram_oldest_unprocessed_age_seconds",
                   "Age of the oldest of those updates; 0 when none (database-wide)", ())
        self.gauge("alertpilot_database_up", "1 when the last scrape could read the database, else 0", ())

    def counter(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        self._families.setdefault(name, _Family(name, help_text, "counter", tuple(labels)))

    def gauge(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        self._families.setdefault(name, _Family(name, help_text, "gauge", tuple(labels)))

    def set(self, name: str, value: float, /, **labels: str) -> None:
        family = self._families[name]
        family.values[self._key(family, labels)] = value

    def zero(self, name: str) -> None:
        """Every series of a gauge back to 0 (kept, so a channel whose backlog emptied reports 0, not nothing)."""
        family = self._families[name]
        family.values = dict.fromkeys(family.values, 0.0)

    def clear(self, name: str) -> None:
        """Drop every series of a gauge (a value that can no longer be read is not reported stale)."""
        self._families[name].values = {}

    def histogram(self, name: str, help_text: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        self._families.setdefault(name, _Family(name, help_text, "histogram", tuple(labels), tuple(sorted(buckets))))

    def inc(self, name: str, amount: float = 1.0, /, **labels: str) -> None:
        family = self._families[name]
        key = self._key(family, labels)
        family.values[key] = family.values.get(key, 0.0) + amount

    def observe(self, name: str, value: float, /, **labels: str) -> None:
        family = self._families[name]
        key = self._key(family, labels)
        counts = family.counts.setdefault(key, [0] * (len(family.buckets) + 1))
        for index, bound in enumerate(family.buckets):
            if value <= bound:
                counts[index] += 1
        counts[-1] += 1
        family.values[key] = family.values.get(key, 0.0) + value

    def label_values(self, name: str, label: str, /) -> set[str]:
        """The values ``label`` has in the series of family ``name`` so far."""
        family = self._families[name]
        index = family.labels.index(label)
        return {key[index] for key in (*family.values, *family.counts)}

    def declare(self, name: str, /, **labels: str) -> None:
        """Show a counter's series at 0 before it first counts (so ``rate()`` sees its first increase)."""
        self.inc(name, 0.0, **labels)

    def value(self, name: str, /, **labels: str) -> float:
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
                if not family.values and not family.labels and family.name not in STATE_GAUGES:
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


async def read_state(metrics: Metrics, db: Database, now: datetime) -> bool:
    """Fill the database-wide gauges (STATE_GAUGES) from ``db`` just before a scrape renders them, and
    ``alertpilot_database_up``. False when the database could not be read: those gauges are then left out
    rather than reported stale, and the process counters still go out."""
    try:
        async with asyncio.timeout(STATE_TIMEOUT_SECONDS), db.read() as tx:
            incidents = await tx.incidents.count_by_status()
            backlog = await tx.outbox.pending_by_channel()
            running = await tx.executions.count_running()
            updates, oldest_update = await tx.telegram_updates.unfinished()
    except Exception as exc:  # unreachable, locked, timed out, schema behind: a scrape never fails for it
        log.warning("metrics_database_unreadable", error=f"{type(exc).__name__}: {exc}"[:300])
        for name in STATE_GAUGES:
            metrics.clear(name)
        metrics.set("alertpilot_database_up", 0)
        return False
    for name in STATE_GAUGES:
        metrics.zero(name)
    for status in (*IncidentStatus, *incidents):
        metrics.set("alertpilot_incidents", incidents.get(status, 0), status=status)
    for channel in metrics.label_values("alertpilot_outbox_sends_total", "channel"):  # the channels sent from here
        backlog.setdefault(channel, (0, None))
    for channel, (depth, oldest) in backlog.items():
        metrics.set("alertpilot_outbox_pending_messages", depth, channel=channel)
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        metrics.set("alertpilot_outbox_oldest_pending_age_seconds", round(age, 3), channel=channel)
    metrics.set("alertpilot_executions_running", running)
    metrics.set("alertpilot_telegram_updates_unprocessed", updates)
    age = 0.0 if oldest_update is None else max(0.0, (now - oldest_update).total_seconds())
    metrics.set("alertpilot_telegram_oldest_unprocessed_age_seconds", round(age, 3))
    metrics.set("alertpilot_database_up", 1)
    return True


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    escaped = (v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, escaped, strict=True)) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(value)
