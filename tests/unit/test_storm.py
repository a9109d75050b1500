"""services/storm.py (which first cards a storm keeps, the digest's context) and Pacer.room, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.pacing import Pacer
from services.ports import ChannelLimits
from services.storm import MAX_REFS, STORM_MIN, FirstCard, digest_context, plan_storm, severity_rank

T0 = datetime(2026, 11, 24, 0, 30, tzinfo=UTC)
GROUP, PRIVATE = "-1001", "555"


def card(n: int, severity: str = "warning", alertname: str = "HighLatency", service: str = "checkout",
         seconds: float | None = None) -> FirstCard:
    return FirstCard(row_id=100 + n, incident_id=n, severity=severity, alertname=alertname, service=service,
                     created_at=T0 + timedelta(seconds=n if seconds is None else seconds))


def pacer(per_chat: float = 1.0, per_group: float = 20.0) -> Pacer:
    return Pacer(ChannelLimits(per_chat_per_second=per_chat, per_group_per_minute=per_group, per_bot_per_second=30.0),
                 lambda chat_id: chat_id.startswith("-"))


def test_storm_severity_rank_orders_critical_error_warning_info_other() -> None:
    ranks = [severity_rank(s) for s in ("critical", "error", "HIGH", "warning", "info", "page", "")]
    assert ranks == sorted(ranks)
    assert severity_rank("error") == severity_rank("high") and severity_rank("page") == severity_rank("")


def test_storm_no_plan_when_the_budget_fits_or_too_few() -> None:
    assert plan_storm([card(n) for n in range(10)], room=10) is None  # every card fits
    assert plan_storm([card(n) for n in range(STORM_MIN - 1)], room=1) is None  # too few to call it a storm
    assert plan_storm([card(n) for n in range(STORM_MIN)], room=1) is not None


def test_storm_keeps_room_minus_one_most_severe_oldest_first() -> None:
    cards = [card(n, "info") for n in range(1, 31)]
    cards += [card(31, "critical", seconds=40), card(32, "critical", seconds=35), card(33, "high"), card(34, "error")]
    cards += [card(35, "warning", seconds=0)]
    plan = plan_storm(cards, room=6)
    assert plan is not None
    assert [c.incident_id for c in plan.kept] == [32, 31, 33, 34, 35]  # one of the room is the digest
    assert len(plan.folded) == len(cards) - 5
    assert {c.incident_id for c in plan.all} == {c.incident_id for c in cards}


def test_storm_room_zero_or_one_folds_everything() -> None:
    for room in (0, 1):
        plan = plan_storm([card(n) for n in range(8)], room=room)
        assert plan is not None and plan.kept == [] and len(plan.folded) == 8


def test_storm_digest_context_counts_tops_and_refs() -> None:
    cards = [card(n, "critical", "DiskFull", "db") for n in range(1, 4)]
    cards += [card(n, "warning", "HighLatency", "checkout") for n in range(4, 44)]
    cards += [card(44, "", "", "")]
    plan = plan_storm(cards, room=5)
    assert plan is not None
    context = digest_context(plan)
    assert context["count"] == 44 and context["kept"] == 4 and context["folded"] == 40
    assert context["by_severity"] == [{"severity": "critical", "count": 3}, {"severity": "warning", "count": 40},
                                      {"severity": "", "count": 1}]
    assert context["top_alerts"] == [{"name": "HighLatency", "count": 40}, {"name": "DiskFull", "count": 3}]
    assert context["top_services"] == [{"name": "checkout", "count": 40}, {"name": "db", "count": 3}]
    assert len(context["refs"]) == MAX_REFS and context["more"] == 40 - MAX_REFS
    assert context["refs"][0] == "INC-5"  # folded ones, by id: INC-1…3 (critical) and INC-4 are kept
    assert context["within_minute"] is True and context["first_at"] == (T0 + timedelta(seconds=1)).isoformat()


def test_storm_digest_context_top_three_and_long_window() -> None:
    cards = [card(n, alertname=f"A{n % 5}", service=f"s{n % 4}", seconds=n * 10) for n in range(20)]
    plan = plan_storm(cards, room=3)
    assert plan is not None
    context = digest_context(plan)
    assert len(context["top_alerts"]) == 3 and len(context["top_services"]) == 3
    assert context["within_minute"] is False


def test_pacer_room_group_is_its_window_less_what_was_sent() -> None:
    p = pacer()
    assert p.room(GROUP, 0.0) == 20
    for t in range(5):
        p.record(GROUP, float(t))
    assert p.room(GROUP, 5.0) == 15
    assert p.room(GROUP, 61.5) == 16  # the first send left the window (a minute and a second's margin)
    assert p.room(GROUP, 65.5) == 20


def test_pacer_room_bounded_by_the_chat_rate() -> None:
    assert pacer(per_chat=0.1).room(GROUP, 0.0) == 6  # 0.1/s: 6 a minute, under the group's 20
    assert pacer(per_chat=1.0).room(PRIVATE, 0.0) == 60  # not a group: the chat rate alone
    p = pacer(per_chat=1.0)
    p.record(PRIVATE, 0.0)
    assert p.room(PRIVATE, 0.5) == 60


def test_pacer_room_of_an_unpaced_channel_is_large() -> None:
    assert pacer(per_chat=1e6, per_group=1e9).room(GROUP, 0.0) > 1000


def test_storm_digest_context_merges_a_later_wave_into_the_unsent_digest() -> None:
    first = plan_storm([card(n, "critical" if n < 3 else "info", service="db") for n in range(1, 11)], room=4)
    assert first is not None
    earlier = digest_context(first)
    wave = plan_storm([card(n, "warning", alertname="DiskFull", seconds=n + 200) for n in range(11, 17)], room=0)
    assert wave is not None
    merged = digest_context(wave, earlier)
    assert merged["count"] == 16 and merged["kept"] == 3 and merged["folded"] == 13
    assert {s["severity"]: s["count"] for s in merged["by_severity"]} == {"critical": 2, "warning": 6, "info": 8}
    assert merged["top_alerts"][0] == {"name": "HighLatency", "count": 10}
    assert merged["refs"] == [f"INC-{n}" for n in range(4, 17)]
    assert merged["first_at"] == earlier["first_at"] and merged["within_minute"] is False
