"""APScheduler wiring (asyncio): cron jobs for the daily report and the Monday digest at the configured local
time, a start-up catch-up for a report missed while down, and the periodic jobs (silence expiry,
reminders, postmortems, housekeeping). The jobs themselves are handlers/jobs.py; what runs exactly once is decided by
their database leases, not by the scheduler (every replica runs the same schedule)."""

from __future__ import annotations

from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.settings import Settings
from handlers.jobs import Jobs

SILENCE_EXPIRY_SECONDS = 30
REMINDER_SECONDS = 60
POSTMORTEM_SECONDS = 10
CATCH_UP_MINUTES = 5
HOUSEKEEPING_MINUTES = 60


def build_scheduler(settings: Settings, jobs: Jobs) -> AsyncIOScheduler:
    """The scheduler, not started. APScheduler fires on the wall clock; the jobs read the app's clock."""
    tz = settings.tz
    at = settings.report_time
    scheduler = AsyncIOScheduler(
        timezone=tz,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": max(60, settings.report_grace_minutes * 60)},
    )
    scheduler.add_job(jobs.daily_report, CronTrigger(hour=at.hour, minute=at.minute, timezone=tz), id="daily-report",
                      name="daily KPI report")
    if settings.weekly_digest:
        scheduler.add_job(jobs.weekly_digest, CronTrigger(day_of_week="mon", hour=at.hour, minute=at.minute, timezone=tz),
                          id="weekly-digest", name="weekly digest")
    soon = datetime.now(tz) + timedelta(seconds=1)  # APScheduler fires on the wall clock
    scheduler.add_job(jobs.catch_up, IntervalTrigger(minutes=CATCH_UP_MINUTES, timezone=tz), id="report-catch-up",
                      name="missed reports", next_run_time=soon)
    scheduler.add_job(jobs.silence_expiry, IntervalTrigger(seconds=SILENCE_EXPIRY_SECONDS, timezone=tz),
                      id="silence-expiry", name="silence expiry", next_run_time=soon)
    if settings.approval_reminder_minutes:
        scheduler.add_job(jobs.approval_reminders, IntervalTrigger(seconds=REMINDER_SECONDS, timezone=tz),
                          id="approval-reminders", name="approval reminders", next_run_time=soon)
    scheduler.add_job(jobs.housekeeping_due, IntervalTrigger(minutes=HOUSEKEEPING_MINUTES, timezone=tz), id="housekeeping",
                      name="replay marks older than a day", next_run_time=soon)
    scheduler.add_job(jobs.postmortems_due, IntervalTrigger(seconds=POSTMORTEM_SECONDS, timezone=tz), id="postmortems",
                      name="postmortems", next_run_time=soon)
    return scheduler
