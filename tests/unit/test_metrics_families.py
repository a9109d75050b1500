"""The /metrics families of issue 8: declared series, database-wide gauges that are zeroed or dropped,
histograms by label, any label name, and scheduled jobs counted by outcome."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from handlers.jobs import Jobs
from services.metrics import STATE_GAUGES, Metrics


def series(metrics: Metrics) -> list[str]:
    return [line for line in metrics.render().splitlines() if not line.startswith("#")]


def test_metrics_declare_every_new_family_with_help_and_type() -> None:
    text = Metrics().render()
    for name, kind in [
        ("alertpilot_alerts_received_total", "counter"), ("alertpilot_alerts_deduplicated_total", "counter"),
        ("alertpilot_alerts_rejected_total", "counter"), ("alertpilot_decision_latency_seconds", "histogram"),
        ("alertpilot_outbox_sends_total", "counter"), ("alertpilot_executions_total", "counter"),
        ("alertpilot_job_runs_total", "counter"), ("alertpilot_incidents", "gauge"),
        ("alertpilot_outbox_pending_messages", "gauge"), ("alertpilot_outbox_oldest_pending_age_seconds", "gauge"),
        ("alertpilot_executions_running", "gauge"), ("alertpilot_database_up", "gauge"),
    ]:
        assert f"# TYPE {name} {kind}\n" in text and f"# HELP {name} " in text


def test_metrics_declared_series_show_at_zero_before_they_count() -> None:
    metrics = Metrics()
    metrics.declare("alertpilot_outbox_sends_total", channel="telegram", result="failed")
    assert 'alertpilot_outbox_sends_total{channel="telegram",result="failed"} 0' in series(metrics)
    metrics.inc("alertpilot_outbox_sends_total", channel="telegram", result="failed")
    metrics.declare("alertpilot_outbox_sends_total", channel="telegram", result="failed")  # never resets
    assert metrics.value("alertpilot_outbox_sends_total", channel="telegram", result="failed") == 1
    assert metrics.label_values("alertpilot_outbox_sends_total", "channel") == {"telegram"}


def test_metrics_state_gauges_are_zeroed_kept_or_dropped() -> None:
    metrics = Metrics()
    assert not [s for s in series(metrics) if s.startswith(STATE_GAUGES)]  # nothing read yet: nothing claimed
    metrics.set("alertpilot_outbox_pending_messages", 4, channel="wecom")
    metrics.set("alertpilot_executions_running", 2)
    metrics.zero("alertpilot_outbox_pending_messages")
    metrics.zero("alertpilot_executions_running")
    assert 'alertpilot_outbox_pending_messages{channel="wecom"} 0' in series(metrics)
    assert "alertpilot_executions_running 0" in series(metrics)
    metrics.clear("alertpilot_outbox_pending_messages")
    metrics.clear("alertpilot_executions_running")
    assert not [s for s in series(metrics) if s.startswith(STATE_GAUGES)]


def test_metrics_decision_latency_histogram_by_source() -> None:
    metrics = Metrics()
    metrics.observe("alertpilot_decision_latency_seconds", 0.003, source="rules")
    metrics.observe("alertpilot_decision_latency_seconds", 7.5, source="ai")
    lines = series(metrics)
    assert 'alertpilot_decision_latency_seconds_bucket{source="rules",le="0.01"} 1' in lines
    assert 'alertpilot_decision_latency_seconds_bucket{source="ai",le="5"} 0' in lines
    assert 'alertpilot_decision_latency_seconds_bucket{source="ai",le="10"} 1' in lines
    assert 'alertpilot_decision_latency_seconds_count{source="ai"} 1' in lines
    assert 'alertpilot_decision_latency_seconds_sum{source="ai"} 7.5' in lines


def test_metrics_take_a_label_called_name() -> None:
    metrics = Metrics()
    metrics.inc("alertpilot_job_runs_total", name="daily_report", outcome="ok")
    assert 'alertpilot_job_runs_total{name="daily_report",outcome="ok"} 1' in series(metrics)
    with pytest.raises(ValueError, match="takes labels"):
        metrics.inc("alertpilot_job_runs_total", job="daily_report", outcome="ok")


class FakeLeases:
    """A turn is held or not, as told."""

    def __init__(self, held: bool) -> None:
        self.held = held

    @contextlib.asynccontextmanager
    async def turn(self, name: str, ttl: timedelta) -> AsyncIterator[bool]:
        yield self.held


class FakeWork:
    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self.result, self.error, self.calls = result, error, 0

    async def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.result


class Service:
    def __init__(self, **methods: FakeWork) -> None:
        self.__dict__.update(methods)


def jobs(metrics: Metrics, *, held: bool = True, report: Any = True, expire: FakeWork | None = None) -> Jobs:
    return Jobs(
        leases=FakeLeases(held),  # type: ignore[arg-type]
        reports=Service(send_due=FakeWork(report)),  # type: ignore[arg-type]
        silences=Service(expire_due=expire or FakeWork(0)),  # type: ignore[arg-type]
        reminders=None,
        postmortems=Service(send_due=FakeWork(0)),  # type: ignore[arg-type]
        metrics=metrics,
    )


async def test_jobs_count_runs_by_outcome() -> None:
    metrics = Metrics()
    await jobs(metrics).silence_expiry()
    await jobs(metrics, held=False).silence_expiry()  # another replica's turn
    failing = FakeWork(error=RuntimeError("database is locked"))
    await jobs(metrics, expire=failing).silence_expiry()  # logged, counted, never raised
    await jobs(metrics).daily_report()
    await jobs(metrics, report=False).daily_report()  # sent already, or another replica's
    await jobs(metrics).approval_reminders()  # reminders off: not a run

    def runs(name: str, outcome: str) -> float:
        return metrics.value("alertpilot_job_runs_total", name=name, outcome=outcome)

    assert failing.calls == 1
    assert (runs("silence_expiry", "ok"), runs("silence_expiry", "skipped"), runs("silence_expiry", "error")) == (1, 1, 1)
    assert (runs("daily_report", "ok"), runs("daily_report", "skipped")) == (1, 1)
    assert metrics.label_values("alertpilot_job_runs_total", "name") == {"silence_expiry", "daily_report"}
