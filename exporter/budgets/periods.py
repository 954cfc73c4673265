"""Calendar periods: the day, the week (from Monday) or the month holding a moment, in a time zone."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from typing import Literal

Period = Literal["daily", "weekly", "monthly"]
PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly")


def _midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def bounds(period: Period, now: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) of the calendar `period` holding `now` (aware), as wall-clock midnights of `zone`.

    A day is midnight to midnight (23 or 25 hours across a daylight-saving change), a week starts on Monday, a
    month on its first day.
    """
    today = now.astimezone(zone).date()
    if period == "daily":
        first, after = today, today + timedelta(days=1)
    elif period == "weekly":
        first = today - timedelta(days=today.weekday())
        after = first + timedelta(days=7)
    else:
        first = today.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    return _midnight(first, zone), _midnight(after, zone)


def ns(moment: datetime) -> int:
    """An aware datetime -> ns since the epoch (exact, microseconds kept)."""
    whole = int(moment.timestamp())
    return whole * 1_000_000_000 + moment.microsecond * 1000
