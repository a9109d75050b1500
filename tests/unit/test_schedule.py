"""Pure logic of the scheduled reports and silences: services/schedule.py (fire times and periods),
services/reports.py (grade, trend, parse_kind), services/matchers.py (durations, /silence arguments,
matching incidents) and the scheduling settings of bot/settings.py."""

from __future__ import annotations

import os
import time as host_time
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.chat.wecom import robot_id
from bot.settings import SettingsError, load_settings
from services.matchers import (
    MAX_MATCHERS,
    REASON_MAX,
    SilenceError,
    first_match,
    matches,
    parse_duration,
    parse_silence,
)
from services.ports import ChatTarget
from services.reports import grade, parse_kind, trend
from services.schedule import (
    ON_DEMAND,
    Period,
    ReportKind,
    latest_daily,
    latest_weekly,
    local_midnight,
    parse_hhmm,
    period_of,
    previous,
)
from storage.clock import UTC
from storage.tables import Incident, Silence

TAIPEI = ZoneInfo("Asia/Taipei")
BERLIN = ZoneInfo("Europe/Berlin")
EIGHT = time(8, 0)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture(params=["UTC", "America/Los_Angeles"])
def host_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """The host's own time zone (TZ) must not matter: the schedule is computed in the configured zone."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    host_time.tzset()
    try:
        assert datetime(2026, 1, 1).astimezone().tzname() in ("UTC", "PST")  # the host zone did change
        yield request.param
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        host_time.tzset()


# --- parse_hhmm -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("08:00", time(8, 0)), ("8:05", time(8, 5)), (" 23:59 ", time(23, 59)), ("00:00", time(0, 0)),
     ("19:30", time(19, 30))],
)
def test_parse_hhmm_accepts_24_hour_times(text: str, expected: time) -> None:
    assert parse_hhmm(text) == expected


@pytest.mark.parametrize(
    "text", ["24:00", "25:00", "8am", "08:60", "0800", "8", "", "08:00:00", "-1:00", "08.00", "8:0", "123:00"]
)
def test_parse_hhmm_rejects_other_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a time of day") as caught:
        parse_hhmm(text)
    assert repr(text) in str(caught.value)
    assert "HH:MM" in str(caught.value)


# --- latest_daily / latest_weekly -----------------------------------------------------------------


def test_daily_0800_taipei_fires_at_midnight_utc(host_zone: str) -> None:
    # 11:00 in Taipei on 24 Nov: today's 08:00 has passed, and 08:00 +08:00 is 00:00 UTC
    fired = latest_daily(utc(2026, 11, 24, 3, 0), EIGHT, TAIPEI)
    assert fired == utc(2026, 11, 24, 0, 0)
    assert fired.tzinfo is UTC
    assert fired.astimezone(TAIPEI).hour == 8


def test_daily_exactly_at_the_fire_time_is_that_occurrence() -> None:
    assert latest_daily(utc(2026, 11, 24, 0, 0), EIGHT, TAIPEI) == utc(2026, 11, 24, 0, 0)


def test_daily_just_before_0800_local_is_the_previous_days_occurrence(host_zone: str) -> None:
    # 07:59 in Taipei on 24 Nov (23:59 UTC on the 23rd): the latest occurrence is 08:00 on 23 Nov
    fired = latest_daily(utc(2026, 11, 23, 23, 59), EIGHT, TAIPEI)
    assert fired == utc(2026, 11, 23, 0, 0)
    assert fired.astimezone(TAIPEI) == datetime(2026, 11, 23, 8, 0, tzinfo=TAIPEI)


def test_daily_late_evening_local_is_the_same_local_day() -> None:
    # 23:30 in Taipei on 24 Nov is 15:30 UTC: still the 08:00 occurrence of the 24th
    assert latest_daily(utc(2026, 11, 24, 15, 30), EIGHT, TAIPEI) == utc(2026, 11, 24, 0, 0)


def test_weekly_fires_on_monday(host_zone: str) -> None:
    # Tuesday 24 Nov 2026, 11:00 Taipei: the latest Monday 08:00 is 23 Nov
    fired = latest_weekly(utc(2026, 11, 24, 3, 0), EIGHT, TAIPEI)
    assert fired == utc(2026, 11, 23, 0, 0)
    assert fired.astimezone(TAIPEI).weekday() == 0


def test_weekly_monday_before_the_time_is_the_previous_monday() -> None:
    # Monday 23 Nov, 07:59 Taipei: this Monday's digest is not due yet
    assert latest_weekly(utc(2026, 11, 22, 23, 59), EIGHT, TAIPEI) == utc(2026, 11, 16, 0, 0)
    assert latest_weekly(utc(2026, 11, 23, 0, 0), EIGHT, TAIPEI) == utc(2026, 11, 23, 0, 0)


def test_weekly_sunday_night_is_the_monday_before() -> None:
    assert latest_weekly(utc(2026, 11, 29, 15, 0), EIGHT, TAIPEI) == utc(2026, 11, 23, 0, 0)  # Sun 23:00 local


def test_weekly_other_weekday() -> None:
    # weekday=4: Fridays. Tuesday 24 Nov → Friday 20 Nov
    assert latest_weekly(utc(2026, 11, 24, 3, 0), EIGHT, TAIPEI, weekday=4) == utc(2026, 11, 20, 0, 0)


# --- period_of ------------------------------------------------------------------------------------


def test_daily_period_is_the_previous_local_day_in_utc(host_zone: str) -> None:
    now = utc(2026, 11, 24, 0, 1)
    fired = latest_daily(now, EIGHT, TAIPEI)
    period = period_of(ReportKind.DAILY, now, TAIPEI, fired_at=fired)
    # 23 Nov 00:00–24:00 in Taipei is 22 Nov 16:00 UTC to 23 Nov 16:00 UTC
    assert period == Period(ReportKind.DAILY, utc(2026, 11, 22, 16, 0), utc(2026, 11, 23, 16, 0),
                            date(2026, 11, 23), date(2026, 11, 23))


def test_daily_period_follows_the_fire_time_not_now() -> None:
    # sent late (the grace window): 20:00 local on 24 Nov for the 08:00 occurrence of the 24th
    fired = utc(2026, 11, 24, 0, 0)
    period = period_of(ReportKind.DAILY, utc(2026, 11, 24, 12, 0), TAIPEI, fired_at=fired)
    assert (period.first_day, period.start, period.end) == (
        date(2026, 11, 23), utc(2026, 11, 22, 16), utc(2026, 11, 23, 16))
    # just before 08:00 local: the occurrence of the 23rd covers the 22nd
    now = utc(2026, 11, 23, 23, 59)
    before = period_of(ReportKind.DAILY, now, TAIPEI, fired_at=latest_daily(now, EIGHT, TAIPEI))
    assert (before.first_day, before.start, before.end) == (
        date(2026, 11, 22), utc(2026, 11, 21, 16), utc(2026, 11, 22, 16))


def test_yesterday_is_the_previous_local_day() -> None:
    period = period_of(ReportKind.YESTERDAY, utc(2026, 11, 24, 3, 0), TAIPEI)
    assert period == Period(ReportKind.YESTERDAY, utc(2026, 11, 22, 16), utc(2026, 11, 23, 16),
                            date(2026, 11, 23), date(2026, 11, 23))


def test_yesterday_uses_the_local_date_not_the_utc_date() -> None:
    # 20:00 UTC on 23 Nov is already 04:00 on the 24th in Taipei: yesterday is the 23rd
    period = period_of(ReportKind.YESTERDAY, utc(2026, 11, 23, 20, 0), TAIPEI)
    assert period.first_day == date(2026, 11, 23)
    assert period.start == utc(2026, 11, 22, 16)


def test_today_runs_from_local_midnight_to_now() -> None:
    now = utc(2026, 11, 24, 3, 17)
    period = period_of(ReportKind.TODAY, now, TAIPEI)
    assert period == Period(ReportKind.TODAY, utc(2026, 11, 23, 16, 0), now, date(2026, 11, 24), date(2026, 11, 24))


def test_last_7_days_is_7_times_24_hours_to_now() -> None:
    now = utc(2026, 11, 24, 3, 17)
    period = period_of(ReportKind.LAST_7_DAYS, now, TAIPEI)
    assert period.start == utc(2026, 11, 17, 3, 17)
    assert period.end == now
    assert (period.first_day, period.last_day) == (date(2026, 11, 17), date(2026, 11, 24))


def test_weekly_period_is_the_previous_monday_to_sunday(host_zone: str) -> None:
    now = utc(2026, 11, 24, 3, 0)  # Tuesday
    fired = latest_weekly(now, EIGHT, TAIPEI)
    period = period_of(ReportKind.WEEKLY, now, TAIPEI, fired_at=fired)
    assert (period.first_day, period.last_day) == (date(2026, 11, 16), date(2026, 11, 22))
    assert period.first_day.weekday() == 0 and period.last_day.weekday() == 6
    assert period.start == utc(2026, 11, 15, 16, 0)
    assert period.end == utc(2026, 11, 22, 16, 0)
    assert period.end - period.start == timedelta(days=7)


def test_previous_of_weekly_is_the_week_before() -> None:
    week = period_of(ReportKind.WEEKLY, utc(2026, 11, 23, 0, 1), TAIPEI, fired_at=utc(2026, 11, 23, 0, 0))
    before = previous(week, TAIPEI)
    assert before == Period(
        ReportKind.WEEKLY, utc(2026, 11, 8, 16), utc(2026, 11, 15, 16), date(2026, 11, 9), date(2026, 11, 15))
    assert before.end == week.start  # adjacent, no gap, no overlap


def test_previous_of_daily_is_the_day_before() -> None:
    day = period_of(ReportKind.DAILY, utc(2026, 11, 24, 0, 1), TAIPEI, fired_at=utc(2026, 11, 24, 0, 0))
    before = previous(day, TAIPEI)
    assert (before.first_day, before.last_day) == (date(2026, 11, 22), date(2026, 11, 22))
    assert before.end == day.start and before.kind is ReportKind.DAILY


def test_local_midnight_is_utc() -> None:
    assert local_midnight(date(2026, 11, 24), TAIPEI) == utc(2026, 11, 23, 16, 0)
    assert local_midnight(date(2026, 11, 24), ZoneInfo("UTC")) == utc(2026, 11, 24, 0, 0)


# --- DST zones ------------------------------------------------------------------------------------


def test_berlin_spring_forward_day_is_23_hours() -> None:
    # Europe/Berlin moves from +01:00 to +02:00 at 02:00 on Sunday 29 March 2026
    fired = latest_daily(utc(2026, 3, 30, 6, 30), EIGHT, BERLIN)
    assert fired == utc(2026, 3, 30, 6, 0)  # 08:00 CEST
    period = period_of(ReportKind.DAILY, utc(2026, 3, 30, 6, 30), BERLIN, fired_at=fired)
    assert period.first_day == date(2026, 3, 29)
    assert period.start == utc(2026, 3, 28, 23, 0)  # 00:00 CET
    assert period.end == utc(2026, 3, 29, 22, 0)  # 00:00 CEST
    assert period.end - period.start == timedelta(hours=23)


def test_berlin_fire_time_stays_at_0800_local_across_the_change() -> None:
    assert latest_daily(utc(2026, 3, 28, 12, 0), EIGHT, BERLIN) == utc(2026, 3, 28, 7, 0)  # 08:00 CET
    assert latest_daily(utc(2026, 3, 29, 12, 0), EIGHT, BERLIN) == utc(2026, 3, 29, 6, 0)  # 08:00 CEST
    # at 06:30 UTC on the 29th it is 08:30 CEST: today's occurrence has passed although 07:00 UTC has not
    assert latest_daily(utc(2026, 3, 29, 6, 30), EIGHT, BERLIN) == utc(2026, 3, 29, 6, 0)


def test_berlin_fall_back_day_is_25_hours_and_its_week_169() -> None:
    # back to +01:00 at 03:00 on Sunday 25 October 2026
    day = period_of(ReportKind.YESTERDAY, utc(2026, 10, 26, 12, 0), BERLIN)
    assert day.first_day == date(2026, 10, 25)
    assert day.end - day.start == timedelta(hours=25)
    week = period_of(ReportKind.WEEKLY, utc(2026, 10, 26, 12, 0), BERLIN, fired_at=utc(2026, 10, 26, 7, 0))
    assert (week.first_day, week.last_day) == (date(2026, 10, 19), date(2026, 10, 25))
    assert week.end - week.start == timedelta(hours=7 * 24 + 1)
    assert previous(week, BERLIN).end - previous(week, BERLIN).start == timedelta(days=7)


def test_taipei_has_no_dst_every_day_is_24_hours() -> None:
    for month in range(1, 13):
        day = period_of(ReportKind.YESTERDAY, utc(2026, month, 15, 3, 0), TAIPEI)
        assert day.end - day.start == timedelta(hours=24)


# --- grade ----------------------------------------------------------------------------------------


def figures(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"remediations": 0, "success_rate": None, "incidents": 0, "resolved_of_opened": 0}
    return base | values


@pytest.mark.parametrize(
    ("rate", "name"),
    [(100.0, "excellent"), (80.0, "excellent"), (79.9, "good"), (50.0, "good"), (49.9, "attention"),
     (0.0, "attention")],
)
def test_grade_on_remediation_success_rate(rate: float, name: str) -> None:
    assert grade(figures(remediations=10, success_rate=rate)) == (name, rate, "remediation")


@pytest.mark.parametrize(
    ("resolved", "name", "rate"),
    [(10, "excellent", 100.0), (8, "excellent", 80.0), (7, "good", 70.0), (5, "good", 50.0), (4, "attention", 40.0),
     (0, "attention", 0.0)],
)
def test_grade_on_resolution_rate_without_remediations(resolved: int, name: str, rate: float) -> None:
    assert grade(figures(incidents=10, resolved_of_opened=resolved)) == (name, rate, "resolution")


def test_grade_prefers_remediations_over_resolutions() -> None:
    # everything resolved, but the remediations mostly failed: the grade says so
    assert grade(figures(remediations=4, success_rate=25.0, incidents=10, resolved_of_opened=10)) == (
        "attention", 25.0, "remediation")


def test_grade_quiet_without_incidents_or_remediations() -> None:
    assert grade(figures()) == ("quiet", None, "none")


def test_grade_resolution_rate_is_a_percentage_of_opened() -> None:
    name, rate, basis = grade(figures(incidents=3, resolved_of_opened=2))
    assert (name, basis) == ("good", "resolution")
    assert rate == pytest.approx(66.666, abs=0.001)


# --- trend ----------------------------------------------------------------------------------------


def test_trend_up_when_more_is_better() -> None:
    assert trend(10, 5, more_is_better=True) == {"arrow": "↑", "good": True, "delta": 100}


def test_trend_up_when_less_is_better() -> None:
    assert trend(12, 10, more_is_better=False) == {"arrow": "↑", "good": False, "delta": 20}


def test_trend_down() -> None:
    assert trend(5, 10, more_is_better=True) == {"arrow": "↓", "good": False, "delta": -50}
    assert trend(5, 10, more_is_better=False) == {"arrow": "↓", "good": True, "delta": -50}


def test_trend_delta_is_rounded_percent() -> None:
    assert trend(1, 3, more_is_better=True)["delta"] == -67
    assert trend(61.5, 60.0, more_is_better=True)["delta"] == 2


def test_trend_from_zero_has_an_arrow_but_no_delta() -> None:
    assert trend(3, 0, more_is_better=True) == {"arrow": "↑", "good": True, "delta": None}
    assert trend(3, 0, more_is_better=False) == {"arrow": "↑", "good": False, "delta": None}


@pytest.mark.parametrize(("current", "before"), [(5, 5), (0, 0), (None, 5), (5, None), (None, None)])
def test_trend_flat_or_nothing_to_compare(current: float | None, before: float | None) -> None:
    assert trend(current, before, more_is_better=True) == {"arrow": "→", "good": None, "delta": None}


def test_trend_down_to_zero() -> None:
    assert trend(0, 4, more_is_better=False) == {"arrow": "↓", "good": True, "delta": -100}


# --- parse_kind -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [("", ReportKind.TODAY), ("   ", ReportKind.TODAY), ("today", ReportKind.TODAY), (" TODAY ", ReportKind.TODAY),
     ("yesterday", ReportKind.YESTERDAY), ("Yesterday", ReportKind.YESTERDAY), ("7d", ReportKind.LAST_7_DAYS),
     ("7", ReportKind.LAST_7_DAYS), ("week", ReportKind.LAST_7_DAYS), ("7days", ReportKind.LAST_7_DAYS),
     ("7D", ReportKind.LAST_7_DAYS)],
)
def test_parse_kind_on_demand_words(text: str, kind: ReportKind) -> None:
    assert parse_kind(text) is kind


@pytest.mark.parametrize("text", ["daily", "weekly", "month", "30d", "today yesterday", "tomorrow"])
def test_parse_kind_rejects_scheduled_and_unknown_kinds(text: str) -> None:
    assert parse_kind(text) is None


def test_on_demand_kinds() -> None:
    assert set(ON_DEMAND) == {ReportKind.TODAY, ReportKind.YESTERDAY, ReportKind.LAST_7_DAYS}


# --- parse_duration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90m", timedelta(minutes=90)), ("1h30m", timedelta(minutes=90)), ("2d", timedelta(days=2)),
     ("1w", timedelta(weeks=1)), (" 2H ", timedelta(hours=2)), ("60s", timedelta(minutes=1)),
     ("1m", timedelta(minutes=1)), ("30d", timedelta(days=30)), ("4w2d", timedelta(days=30)),
     ("1d12h", timedelta(hours=36)), ("90s", timedelta(seconds=90))],
)
def test_parse_duration_valid(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "1.5h", "-1h", "h", "10", "1y", "2 h", "123456m", "1h-30m", "1hour"])
def test_parse_duration_bad(text: str) -> None:
    with pytest.raises(SilenceError) as caught:
        parse_duration(text)
    assert caught.value.code == "bad_duration"
    assert caught.value.text == text[:32]


@pytest.mark.parametrize("text", ["59s", "0m", "0s", "31d", "30d1s", "5w", "99999d"])
def test_parse_duration_out_of_range(text: str) -> None:
    with pytest.raises(SilenceError) as caught:
        parse_duration(text)
    assert caught.value.code == "duration_range"


def test_silence_error_is_a_value_error_with_code_and_text() -> None:
    error = SilenceError("bad_duration", "1y")
    assert isinstance(error, ValueError)
    assert (error.code, error.text, str(error)) == ("bad_duration", "1y", "bad_duration: 1y")


def test_parse_duration_error_text_is_clipped() -> None:
    with pytest.raises(SilenceError) as caught:
        parse_duration("x" * 100)
    assert caught.value.text == "x" * 32


# --- parse_silence --------------------------------------------------------------------------------


def test_parse_silence_service_shorthand_with_reason() -> None:
    assert parse_silence("checkout 2h deploy in progress") == ({"service": "checkout"}, timedelta(hours=2),
                                                               "deploy in progress")


def test_parse_silence_label_list_without_reason() -> None:
    assert parse_silence("namespace=prod alertname=DiskFull 30m") == (
        {"namespace": "prod", "alertname": "DiskFull"}, timedelta(minutes=30), "")


def test_parse_silence_shorthand_and_labels_together() -> None:
    text = "payments-api namespace=prod severity=warning 1h30m  noisy  after deploy"
    matchers, duration, reason = parse_silence(text)
    assert matchers == {"service": "payments-api", "namespace": "prod", "severity": "warning"}
    assert duration == timedelta(minutes=90)
    assert reason == "noisy after deploy"  # words re-joined with single spaces


def test_parse_silence_quoted_values_are_unquoted() -> None:
    matchers, _, _ = parse_silence("namespace=\"prod\" team='sre' 1h")
    assert matchers == {"namespace": "prod", "team": "sre"}


def test_parse_silence_service_shorthand_characters() -> None:
    matchers, _, _ = parse_silence("svc.v2:api/backend_1 1h")
    assert matchers == {"service": "svc.v2:api/backend_1"}


def test_parse_silence_reason_is_clipped() -> None:
    _, _, reason = parse_silence("checkout 1h " + "a" * 500)
    assert reason == "a" * REASON_MAX


def test_parse_silence_duration_is_case_insensitive() -> None:
    assert parse_silence("checkout 2H")[1] == timedelta(hours=2)


def test_parse_silence_max_matchers() -> None:
    words = " ".join(f"l{i}=v" for i in range(MAX_MATCHERS))
    matchers, _, _ = parse_silence(f"{words} 1h")
    assert len(matchers) == MAX_MATCHERS
    with pytest.raises(SilenceError) as caught:
        parse_silence(f"{words} l{MAX_MATCHERS}=v 1h")
    assert caught.value.code == "bad_matcher"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "usage"),
        ("   ", "usage"),
        ("2h", "no_matcher"),
        ("2h checkout", "no_matcher"),
        ("checkout", "no_duration"),
        ("namespace=prod alertname=DiskFull", "no_duration"),
        ("checkout 31d", "duration_range"),
        ("checkout 30s", "duration_range"),
        ("checkout payments 1h", "bad_matcher"),  # a second bare word is not a second service
        ("service=payments checkout 1h", "bad_matcher"),
        ("bad-label=x 1h", "bad_matcher"),
        ("1abc=x 1h", "bad_matcher"),
        ("namespace= 1h", "bad_matcher"),
        ("namespace=\"\" 1h", "bad_matcher"),
        ("=prod 1h", "bad_matcher"),
        ("check*out 1h", "bad_matcher"),
        ("namespace=" + "x" * 201 + " 1h", "bad_matcher"),
        ("x" * 121 + " 1h", "bad_matcher"),
    ],
)
def test_parse_silence_errors(text: str, code: str) -> None:
    with pytest.raises(SilenceError) as caught:
        parse_silence(text)
    assert caught.value.code == code


def test_parse_silence_bad_matcher_names_the_word() -> None:
    with pytest.raises(SilenceError) as caught:
        parse_silence("namespace=prod bad-label=x 1h")
    assert caught.value.text == "bad-label=x"


# --- matches / first_match ------------------------------------------------------------------------


def incident(**values: Any) -> Incident:
    base: dict[str, Any] = {
        "alertname": "DiskFull", "service": "checkout", "namespace": "prod", "severity": "critical",
        "common_labels": {"alertname": "DiskFull", "instance": "10.0.0.1:9100", "team": "sre"},
    }
    return Incident(**(base | values))


def test_matches_service_against_the_incident_service() -> None:
    assert matches({"service": "checkout"}, incident())
    assert not matches({"service": "payments"}, incident())


def test_matches_service_against_the_service_label() -> None:
    inc = incident(service="", common_labels={"service": "cart"})
    assert matches({"service": "cart"}, inc)
    # either the incident's service or the label: both are accepted
    assert matches({"service": "checkout"}, incident(common_labels={"service": "cart"}))
    assert matches({"service": "cart"}, incident(common_labels={"service": "cart"}))


def test_matches_incident_fields_missing_from_the_labels() -> None:
    inc = incident(common_labels={})
    assert matches({"namespace": "prod", "alertname": "DiskFull", "severity": "critical"}, inc)
    assert not matches({"namespace": "staging"}, inc)


def test_matches_common_labels() -> None:
    assert matches({"team": "sre", "instance": "10.0.0.1:9100"}, incident())
    assert not matches({"team": "payments"}, incident())
    assert not matches({"cluster": "eu-1"}, incident())  # an absent label never matches


def test_matches_needs_every_matcher() -> None:
    assert matches({"service": "checkout", "namespace": "prod", "team": "sre"}, incident())
    assert not matches({"service": "checkout", "namespace": "staging"}, incident())


def test_matches_is_case_sensitive() -> None:
    assert not matches({"alertname": "diskfull"}, incident())


def test_matches_empty_incident_fields_are_not_labels() -> None:
    assert not matches({"severity": ""}, incident(severity="", common_labels={}))


def test_matches_the_labels_win_over_the_incident_fields() -> None:
    inc = incident(namespace="prod", common_labels={"namespace": "prod-eu"})
    assert matches({"namespace": "prod-eu"}, inc)
    assert not matches({"namespace": "prod"}, inc)


def test_matches_parsed_silence() -> None:
    matchers, _, _ = parse_silence("checkout namespace=prod 1h")
    assert matches(matchers, incident())
    assert not matches(matchers, incident(namespace="staging", common_labels={}))


def silence(sid: int, matchers: dict[str, str]) -> Silence:
    return Silence(id=sid, matchers=matchers, created_at=utc(2026, 11, 24), ends_at=utc(2026, 11, 25))


def test_first_match_returns_the_first_matching_silence_in_order() -> None:
    silences = [
        silence(1, {"service": "payments"}), silence(2, {"namespace": "prod"}), silence(3, {"service": "checkout"})
    ]
    found = first_match(silences, incident())
    assert found is not None and found.id == 2
    found = first_match(list(reversed(silences)), incident())
    assert found is not None and found.id == 3


def test_first_match_none() -> None:
    assert first_match([silence(1, {"service": "payments"}), silence(2, {"team": "db"})], incident()) is None
    assert first_match([], incident()) is None


# --- settings: schedule and report chats ----------------------------------------------------------

WECOM_KEY = "0123abcd-4567-89ef-0123-456789abcdef"


def test_settings_schedule_defaults() -> None:
    settings = load_settings()
    assert settings.daily_report_time == "08:00"
    assert settings.report_time == time(8, 0)
    assert settings.report_chats == ""
    assert settings.report_targets is None  # the card chats
    assert settings.report_grace_minutes == 360
    assert settings.weekly_digest is True
    assert settings.approval_reminder_minutes == 15


def test_settings_daily_report_time_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTPILOT_DAILY_REPORT_TIME", " 7:30 ")
    settings = load_settings()
    assert settings.daily_report_time == "7:30"
    assert settings.report_time == time(7, 30)


@pytest.mark.parametrize("value", ["25:00", "8am", "24:00", "08:00pm", "noon"])
def test_settings_daily_report_time_errors(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ALERTPILOT_DAILY_REPORT_TIME", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "ALERTPILOT_DAILY_REPORT_TIME: not a time of day" in message
    assert repr(value) in message


def test_settings_report_chats_telegram_and_wecom(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTPILOT_TELEGRAM_TOKEN", "123:ABC")
    monkeypatch.setenv("ALERTPILOT_WECOM_WEBHOOK_KEYS", WECOM_KEY)
    monkeypatch.setenv("ALERTPILOT_REPORT_CHATS", f" tg:-100123 , wecom:{WECOM_KEY},tg:-100123")
    settings = load_settings()
    assert settings.report_chats == f"tg:-100123,wecom:{WECOM_KEY},tg:-100123"
    assert settings.report_targets == [ChatTarget("telegram", "-100123"), ChatTarget("wecom", robot_id(WECOM_KEY))]


def test_settings_report_chats_telegram_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTPILOT_REPORT_CHATS", "tg:-100123")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "ALERTPILOT_REPORT_CHATS: tg:-100123 needs Telegram (set ALERTPILOT_TELEGRAM_TOKEN)" in str(caught.value)


def test_settings_report_chats_wecom_key_must_be_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTPILOT_WECOM_WEBHOOK_KEYS", WECOM_KEY)
    monkeypatch.setenv("ALERTPILOT_REPORT_CHATS", "wecom:ffffffff-unknown-key")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "ALERTPILOT_REPORT_CHATS: a wecom: entry must be one of ALERTPILOT_WECOM_WEBHOOK_KEYS" in message
    assert "ffffffff-unknown-key" not in message  # a webhook key is a credential: not echoed


@pytest.mark.parametrize("value", ["slack:C123", "tg:abc", "-100123", "wecom:short", "tg:"])
def test_settings_report_chats_format_errors(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ALERTPILOT_TELEGRAM_TOKEN", "123:ABC")
    monkeypatch.setenv("ALERTPILOT_REPORT_CHATS", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "ALERTPILOT_REPORT_CHATS: not a report chat" in str(caught.value)


def test_settings_approval_reminders_can_be_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTPILOT_APPROVAL_REMINDER_MINUTES", "0")
    assert load_settings().approval_reminder_minutes == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ALERTPILOT_APPROVAL_REMINDER_MINUTES", "-1"), ("ALERTPILOT_APPROVAL_REMINDER_MINUTES", "1441"),
     ("ALERTPILOT_REPORT_GRACE_MINUTES", "1441"), ("ALERTPILOT_POSTMORTEM_MIN_MINUTES", "-5")],
)
def test_settings_schedule_ranges(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert f"{variable}:" in str(caught.value)
