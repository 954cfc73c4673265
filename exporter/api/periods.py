"""Calendar buckets of the usage report: ISO weeks (Monday to Monday) and months in the configured time zone."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

PERIODS = ("week", "month")
MAX_PERIODS = 600  # week or month buckets in one usage report (each is one exact usage query)


def _start_of(moment: datetime, name: str) -> datetime:
    """The local midnight that starts the week (Monday) or month holding `moment` (a zone-aware datetime)."""
    day = moment.date() - timedelta(days=moment.weekday()) if name == "week" else moment.date().replace(day=1)
    return datetime(day.year, day.month, day.day, tzinfo=moment.tzinfo)


def _next(start: datetime, name: str) -> datetime:
    if name == "week":
        day = start.date() + timedelta(days=7)
    else:
        day = start.date().replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return datetime(day.year, day.month, day.day, tzinfo=start.tzinfo)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


def periods(start_ns: int, end_ns: int, name: str, zone: ZoneInfo) -> list[tuple[int, int, datetime]]:
    """The week or month buckets in `zone` that overlap [start_ns, end_ns): (start ns, end ns, local start) each,
    the first and last cut to the range. Local midnights follow the zone's daylight saving rules."""
    moment = datetime.fromtimestamp(start_ns // 1_000_000_000, zone)
    local = _start_of(moment, name)
    out = []
    while _ns(local) < end_ns:
        following = _next(local, name)
        out.append((max(_ns(local), start_ns), min(_ns(following), end_ns), local))
        local = following
    return out


def label(local: datetime) -> str:
    """RFC 3339 text of a bucket's local start, with the zone's offset (Z for UTC)."""
    return local.isoformat(timespec="seconds").replace("+00:00", "Z")
