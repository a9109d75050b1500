"""Alert storms (issue 9): when a chat has more new incidents waiting for their first card than its budget for
the next minute allows, it gets one digest and cards only for the most severe; the others are folded (they stay
in /incidents and /status). Pure logic: which first cards to keep and the digest's context; the outbox acts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.incidents import incident_ref

STORM_TEMPLATE = "storm_digest"
STORM_MIN = 5  # fewer first cards than this never make a storm, whatever the budget
FOLDED_REF = "folded"  # MessageRef kind: the incident was folded into a digest in that chat (no card there)
UNFOLDED_REF = "unfolded"  # ... and then someone acted on it there: its card and thread go out again
FOLDED_ERROR = "folded into a storm digest"
TOP = 3  # alertnames and services named in the digest
MAX_REFS = 30  # folded incidents named in the digest
SEVERITY_RANKS = {"critical": 0, "error": 1, "high": 1, "warning": 2, "info": 3}
OTHER_RANK = len(set(SEVERITY_RANKS.values()))


@dataclass(frozen=True)
class FirstCard:
    """An incident's first card waiting for a chat, with what decides its place in a storm."""

    row_id: int
    incident_id: int
    severity: str
    alertname: str
    service: str
    created_at: datetime


@dataclass(frozen=True)
class StormPlan:
    kept: list[FirstCard]  # most severe first: sent as cards
    folded: list[FirstCard]  # named in the digest only

    @property
    def all(self) -> list[FirstCard]:
        return [*self.kept, *self.folded]


def severity_rank(severity: str) -> int:
    """critical < error/high < warning < info < anything else (lower goes first)."""
    return SEVERITY_RANKS.get(severity.strip().lower(), OTHER_RANK)


def plan_storm(cards: Sequence[FirstCard], room: int, *, minimum: int = STORM_MIN) -> StormPlan | None:
    """None when the chat may send every first card (or there are fewer than ``minimum``); otherwise keep the
    ``room - 1`` most severe (oldest incident first among equals: one message of the room is the digest) and
    fold the rest."""
    if len(cards) <= room or len(cards) < minimum:
        return None
    ordered = sorted(cards, key=lambda c: (severity_rank(c.severity), c.created_at, c.incident_id))
    keep = max(room - 1, 0)
    return StormPlan(kept=ordered[:keep], folded=ordered[keep:])


def _top(counts: dict[str, int]) -> list[dict[str, Any]]:
    ranked = sorted(((k, n) for k, n in counts.items() if k), key=lambda item: (-item[1], item[0]))[:TOP]
    return [{"name": name[:80], "count": count} for name, count in ranked]


def digest_context(plan: StormPlan, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The storm_digest template's context (JSON-serialisable: it is stored in the outbox row). ``previous``:
    the context of the chat's digest that is not sent yet, which this plan's incidents join (one digest)."""
    before = (previous or {}).get("tally") or {}
    severities: Counter[str] = Counter(before.get("severities") or {})
    alerts: Counter[str] = Counter(before.get("alerts") or {})
    services: Counter[str] = Counter(before.get("services") or {})
    cards = plan.all
    severities.update(c.severity.strip().lower()[:40] for c in cards)
    alerts.update(c.alertname[:80] for c in cards)
    services.update(c.service[:80] for c in cards)
    folded = sorted({*(before.get("folded_ids") or []), *(c.incident_id for c in plan.folded)})
    kept = int(before.get("kept") or 0) + len(plan.kept)
    times = [c.created_at for c in cards] + [datetime.fromisoformat(t) for t in before.get("times") or []]
    first, last = min(times), max(times)
    by_severity = [
        {"severity": severity, "count": count}
        for severity, count in sorted(severities.items(), key=lambda item: (severity_rank(item[0]), item[0]))
    ]
    return {
        "count": sum(severities.values()),
        "kept": kept,
        "folded": len(folded),
        "by_severity": by_severity,
        "top_alerts": _top(alerts),
        "top_services": _top(services),
        "refs": [incident_ref(i) for i in folded[:MAX_REFS]],
        "more": max(0, len(folded) - MAX_REFS),
        "first_at": first.isoformat(),
        "last_at": last.isoformat(),
        "within_minute": (last - first).total_seconds() <= 60,
        # what a later wave merges into (not shown)
        "tally": {"severities": dict(severities), "alerts": dict(alerts), "services": dict(services),
                  "folded_ids": folded, "kept": kept, "times": [first.isoformat(), last.isoformat()]},
    }
