"""A statement's period: a month, an ISO week, a day or explicit bounds; and the period before a moment (what a
scheduled report covers). Calendar periods follow llmtally.yaml's `timezone:` (UTC by default); explicit bounds are
UTC unless they carry an offset."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Literal

from ..api.params import QueryError, TimeRange, time_range
from ..budgets.periods import Period, bounds, ns

Kind = Literal["month", "week", "day"]
KINDS: tuple[Kind, ...] = ("month", "week", "day")
_CALENDAR: dict[Kind, Period] = {"month": "monthly", "week": "weekly", "day": "daily"}


def _label(kind: Kind, first: date) -> str:
    if kind == "month":
        return first.strftime("%Y-%m")
    if kind == "week":
        year, week, _ = first.isocalendar()
        return f"{year}-W{week:02d}"
    return first.isoformat()


def calendar(kind: Kind, moment: datetime, zone: tzinfo = UTC) -> TimeRange:
    """The month, week (from Monday) or day holding `moment`, named like 2026-11, 2026-W45 or 2026-11-03."""
    start, end = bounds(_CALENDAR[kind], moment, zone)
    return TimeRange(_label(kind, start.date()), ns(start), ns(end))


def previous(kind: Kind, moment: datetime, zone: tzinfo = UTC) -> TimeRange:
    """The whole month, week or day before the one holding `moment` (a scheduled report's period)."""
    current = calendar(kind, moment, zone)
    before = datetime.fromtimestamp(current.start_ns / 1e9, UTC) - timedelta(microseconds=1)
    return calendar(kind, before, zone)


def period(
    month: str | None = None,
    week: str | None = None,
    day: str | None = None,
    start: str | None = None,
    end: str | None = None,
    zone: tzinfo = UTC,
) -> TimeRange:
    """The period asked for: `month` (2026-11), `week` (ISO, 2026-W45), `day` (2026-11-03), or `start` (and `end`,
    default now) as dates or date-times. Exactly one way must be given."""
    given = [name for name, value in (("month", month), ("week", week), ("day", day)) if value]
    if len(given) + bool(start or end) != 1:
        raise QueryError("give one period: month (2026-11), week (2026-W45), day (2026-11-03) or start/end")
    try:
        if month:
            first = datetime.strptime(month, "%Y-%m").replace(tzinfo=zone)
            return calendar("month", first, zone)
        if week:
            year, _, number = week.upper().partition("-W")
            first_day = date.fromisocalendar(int(year), int(number), 1)
            return calendar("week", datetime(first_day.year, first_day.month, first_day.day, tzinfo=zone), zone)
        if day:
            one = date.fromisoformat(day)
            return calendar("day", datetime(one.year, one.month, one.day, tzinfo=zone), zone)
    except ValueError:
        raise QueryError(
            f"the period must look like 2026-11 (month), 2026-W45 (week) or 2026-11-03 (day), not {given[0]}="
            f"{month or week or day!r}"
        ) from None
    return time_range("custom", start, end)
