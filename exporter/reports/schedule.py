"""When a scheduled report is due: the latest scheduled time at or before now (monthly on a day at HH:MM, weekly on
a weekday, daily, or a cron expression; in the configured time zone), and the period it covers (the whole one before
that time, in that zone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from croniter import croniter

from ..api.params import TimeRange
from .config import ReportConfig
from .periods import previous


def _monthly(report: ReportConfig, now: datetime) -> datetime:
    hour, minute = report.at
    fire = now.replace(day=report.day, hour=hour, minute=minute, second=0, microsecond=0)
    if fire > now:
        last_month = now.replace(day=1) - timedelta(days=1)
        fire = fire.replace(year=last_month.year, month=last_month.month)
    return fire


def latest_fire(report: ReportConfig, now: datetime, zone: tzinfo = UTC) -> datetime:
    """The latest scheduled time of `report` at or before `now` (aware; the schedule read in `zone`), in UTC."""
    return _latest_fire(report, now.astimezone(zone)).astimezone(UTC)


def _latest_fire(report: ReportConfig, now: datetime) -> datetime:
    if report.is_cron:
        base = now + timedelta(microseconds=1)  # croniter's get_prev is strictly before its base
        fire: datetime = croniter(report.schedule, base).get_prev(datetime)
        return fire
    if report.schedule == "monthly":
        return _monthly(report, now)
    hour, minute = report.at
    fire = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if report.schedule == "weekly":
        fire -= timedelta(days=(fire.weekday() - report.day) % 7)
        return fire if fire <= now else fire - timedelta(days=7)
    return fire if fire <= now else fire - timedelta(days=1)


def due_period(report: ReportConfig, now: datetime, zone: tzinfo = UTC) -> tuple[datetime, TimeRange]:
    """The latest scheduled time and the period it reports on (the month, week or day before it, in `zone`)."""
    fire = latest_fire(report, now, zone)
    return fire, previous(report.period, fire.astimezone(zone), zone)
