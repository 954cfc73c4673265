"""Query parameters shared by the HTTP API and the commands: time range, filters, grouping; one clear error each."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal, get_args

from ..store.rollup import DAY_NS, HOUR_NS
from ..store.select import STATUSES, Selection

RangeName = Literal["today", "24h", "7d", "30d", "custom"]
RANGES: tuple[str, ...] = get_args(RangeName)
_SPAN_NS = {"24h": DAY_NS, "7d": 7 * DAY_NS, "30d": 30 * DAY_NS}
# Instants taken: from the epoch to 2200 (times are ns since the epoch in 64-bit columns; far earlier or later ones
# overflow the queries, the previous period or the date conversions).
_LATEST_NS = 7_258_118_400 * 1_000_000_000  # 2200-01-01T00:00:00Z
MAX_BUCKETS = 10_000  # hour/day buckets in one usage report (each is a row)

# Public filter names -> the store's column (the same names are group_by dimensions).
FILTERS = {
    "user": "user_id",
    "api_key": "api_key",
    "model": "request_model",
    "response_model": "response_model",
    "provider": "provider",
    "operation": "operation",
    "feature": "feature",
    "department": "department",
    "environment": "environment",
    "error_type": "error_type",
    "service_tier": "service_tier",
}
GROUPS = (*FILTERS, "status", "hour", "day")
_GROUP_COLUMNS = {**FILTERS, "status": "status", "hour": "hour", "day": "day"}
USAGE_STATUSES = ("success", "error")
LOG_STATUSES = STATUSES


class QueryError(ValueError):
    """A query parameter that cannot be used; the message names it and says what is allowed."""


@dataclass(frozen=True)
class TimeRange:
    """[start_ns, end_ns) in ns since the epoch, UTC; `name` is how it was asked for."""

    name: str
    start_ns: int
    end_ns: int

    @property
    def span_ns(self) -> int:
        return self.end_ns - self.start_ns

    def previous(self) -> TimeRange:
        """The period of the same length just before this one."""
        return TimeRange("previous", self.start_ns - self.span_ns, self.start_ns)

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "start": iso(self.start_ns), "end": iso(self.end_ns)}


def iso(time_ns: int) -> str:
    """RFC 3339 UTC text of a time in ns since the epoch (microseconds kept when not zero)."""
    moment = datetime.fromtimestamp(time_ns / 1e9, UTC)
    text = moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def instant(text: str, name: str) -> int:
    """An ISO 8601 date or date-time (UTC unless it has an offset) -> ns since the epoch."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        raise QueryError(
            f"{name} must be an ISO 8601 date or date-time such as 2026-01-31 or 2026-01-31T12:00:00Z, not {text!r}"
        ) from None
    time_ns = int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
    if not 0 <= time_ns < _LATEST_NS:
        raise QueryError(f"{name} must be between 1970-01-01 and 2200-01-01, not {text!r}")
    return time_ns


def time_range(
    name: str | None = None,
    start: str | None = None,
    end: str | None = None,
    *,
    default: str = "7d",
    now_ns: int | None = None,
) -> TimeRange:
    """The range asked for: `today` (since 00:00 UTC), `24h`, `7d`, `30d` (ending now), or `custom` from `start`
    to `end` (dates or date-times; a date as `end` includes that day; `end` defaults to now). Giving `start` or
    `end` alone implies custom."""
    now = time.time_ns() if now_ns is None else now_ns
    if name is None:
        name = "custom" if start or end else default
    if name not in RANGES:
        raise QueryError(f"range must be one of {', '.join(RANGES)}, not {name!r}")
    if name != "custom":
        if start or end:
            raise QueryError(f"start and end go with range=custom (or no range), not range={name}")
        begin = now - now % DAY_NS if name == "today" else now - _SPAN_NS[name]
        return TimeRange(name, begin, now)
    if not start:
        raise QueryError("range=custom needs start (and optionally end)")
    begin = instant(start, "start")
    finish = now if not end else instant(end, "end") + (DAY_NS if len(end) == 10 else 0)
    if finish <= begin:
        raise QueryError(f"end ({end or 'now'}) must be after start ({start})")
    return TimeRange("custom", begin, finish)


@dataclass(frozen=True)
class Filters:
    """Equality filters by public name (see FILTERS) and a status."""

    equal: Mapping[str, str] = field(default_factory=dict)
    status: str | None = None

    @classmethod
    def parse(cls, values: Mapping[str, str | None], statuses: tuple[str, ...] = LOG_STATUSES) -> Filters:
        given = {k: v for k, v in values.items() if v is not None and k != "status"}
        unknown = [k for k in given if k not in FILTERS]
        if unknown:
            raise QueryError(f"unknown filter(s) {', '.join(unknown)}; known: {', '.join(FILTERS)}")
        with_nul = [k for k, v in given.items() if "\x00" in v]  # PostgreSQL refuses them in text parameters
        if with_nul:
            raise QueryError(f"{', '.join(with_nul)} must not contain NUL characters")
        status = values.get("status")
        if status is not None and status not in statuses:
            raise QueryError(f"status must be one of {', '.join(statuses)}, not {status!r}")
        return cls(given, status)

    def with_user(self, user: str) -> Filters:
        return Filters({**self.equal, "user": user}, self.status)

    def columns(self) -> dict[str, str]:
        """Store column -> value (for rollup queries; status only as success/error)."""
        out = {FILTERS[k]: v for k, v in self.equal.items()}
        if self.status is not None:
            out["status"] = self.status
        return out

    def selection(self, span: TimeRange) -> Selection:
        return Selection(span.start_ns, span.end_ns, {FILTERS[k]: v for k, v in self.equal.items()}, self.status)

    def as_json(self) -> dict[str, str]:
        out = dict(self.equal)
        if self.status is not None:
            out["status"] = self.status
        return out


def group_by(text: str | None) -> list[str]:
    """A comma-separated group_by list (public names) -> the names, checked."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise QueryError(f"group_by: unknown name(s) {', '.join(unknown)}; known: {', '.join(GROUPS)}")
    if len(set(names)) != len(names):
        raise QueryError(f"group_by names must be distinct, got {text!r}")
    if "hour" in names and "day" in names:
        raise QueryError("group_by takes hour or day, not both")
    return names


def group_column(name: str) -> str:
    return _GROUP_COLUMNS[name]


def buckets(span: TimeRange, width_ns: int) -> list[int]:
    """Start of every `width_ns` bucket (UTC) that overlaps the range."""
    first = span.start_ns - span.start_ns % width_ns
    return list(range(first, span.end_ns, width_ns))


BUCKET_WIDTH = {"hour": HOUR_NS, "day": DAY_NS}


def check_buckets(span: TimeRange, names: Sequence[str]) -> None:
    """Refuses an hour or day grouping with more than MAX_BUCKETS buckets over the range."""
    for name in names:
        if name in BUCKET_WIDTH:
            width = BUCKET_WIDTH[name]
            count = -(-(span.end_ns - (span.start_ns - span.start_ns % width)) // width)
            if count > MAX_BUCKETS:
                raise QueryError(
                    f"group_by={name} over this range gives {count:,} buckets, more than {MAX_BUCKETS:,}: "
                    "use a shorter range or a coarser bucket"
                )
