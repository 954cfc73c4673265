"""Query parameters shared by the HTTP API and the commands: time range, filters, grouping; one clear error each."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from ..normalise.record import Record
from ..store import Store, UsageRow
from ..store.json_sql import JsonFilters
from ..store.record_usage import DIMENSION_PREFIX
from ..store.rollup import DAY_NS, HOUR_NS, SUMS
from ..store.select import SORT_KEYS, STATUSES, Cursor, Selection, sort_value
from .periods import MAX_PERIODS, PERIODS, periods

RangeName = Literal["1h", "today", "24h", "7d", "30d", "custom"]
RANGES: tuple[str, ...] = get_args(RangeName)
_SPAN_NS = {"1h": HOUR_NS, "24h": DAY_NS, "7d": 7 * DAY_NS, "30d": 30 * DAY_NS}
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
GROUPS = (*FILTERS, "status", "hour", "day", "week", "month")
_GROUP_COLUMNS = {**FILTERS, "status": "status", "hour": "hour", "day": "day", "week": "week", "month": "month"}
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
    """The range asked for: `today` (since 00:00 UTC), `1h`, `24h`, `7d`, `30d` (ending now), or `custom` from `start`
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


ANY = ".*"
"""A filter value that means any value: Grafana's All (the dashboards' custom all value, the regex that matches
everything), like an empty value."""
MAX_COMBINATIONS = 256  # value combinations one request-log page or export may read (one indexed query each)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def values_of(given: str | Sequence[str] | None) -> tuple[str, ...]:
    """One filter's values: each occurrence of the parameter is a comma-separated list, or a list of double-quoted
    values (Grafana's doublequote format, `"a","b"`, with `\\"` for a quote inside) for values that hold a comma.
    Empty items are dropped, and so is every value when one is `.*` (Grafana's All): no values left means no filter.
    Duplicates are dropped, the order kept."""
    occurrences = [given] if isinstance(given, str) else list(given or ())
    found: list[str] = []
    for text in occurrences:
        stripped = text.strip()
        found.extend(_quoted_list(stripped) if stripped.startswith('"') else (i.strip() for i in text.split(",")))
    if ANY in found:
        return ()
    return tuple(dict.fromkeys(item for item in found if item))


def _quoted_list(text: str) -> list[str]:
    items, at = [], 0
    while at < len(text):
        match = _QUOTED.match(text, at)
        if match is None:
            raise QueryError(f'a quoted filter value list must look like "a","b", not {text!r}')
        items.append(re.sub(r'\\"', '"', match.group(1)))
        at = match.end()
        if at < len(text):
            if text[at] != ",":
                raise QueryError(f'a quoted filter value list must look like "a","b", not {text!r}')
            at += 1
    return items


@dataclass(frozen=True)
class Filters:
    """Filters by public name (see FILTERS): each names one or more accepted values (a record matches one of them);
    and the accepted statuses. A filter not given (or given empty, or as `.*`) accepts any value."""

    equal: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    status: tuple[str, ...] = ()
    http_status: tuple[int, ...] = ()  # exact HTTP status codes (any of them)
    json: JsonFilters = field(default_factory=dict)  # request parameters and dimensions (`extra_filters`)

    def __post_init__(self) -> None:
        # A single value may be given as a string.
        equal = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in self.equal.items()}
        object.__setattr__(self, "equal", {k: v for k, v in equal.items() if v})
        status = self.status
        object.__setattr__(self, "status", (status,) if isinstance(status, str) else tuple(status or ()))

    @classmethod
    def parse(
        cls, values: Mapping[str, str | Sequence[str] | None], statuses: tuple[str, ...] = LOG_STATUSES
    ) -> Filters:
        """Checks the filters of an API call or a command: each a string or a list of strings (repeated
        parameters), see `values_of`."""
        given = {k: v for k, v in values.items() if v is not None and k not in ("status", "http_status")}
        unknown = [k for k in given if k not in FILTERS]
        if unknown:
            raise QueryError(f"unknown filter(s) {', '.join(unknown)}; known: {', '.join(FILTERS)}")
        parsed = {k: values_of(v) for k, v in given.items()}
        with_nul = [k for k, v in parsed.items() if any("\x00" in item for item in v)]  # PostgreSQL refuses them
        if with_nul:
            raise QueryError(f"{', '.join(with_nul)} must not contain NUL characters")
        status, codes = http_statuses(values_of(values.get("status")), values_of(values.get("http_status")))
        wrong = [s for s in status if s not in statuses]
        if wrong:
            raise QueryError(
                f"status must be one of {', '.join(statuses)} or an HTTP status code (100-599), "
                f"not {', '.join(map(repr, wrong))}"
            )
        if set(USAGE_STATUSES) <= set(status):
            status = ()  # success or error: every record
        return cls(parsed, status, codes)

    def with_user(self, user: str) -> Filters:
        return replace(self, equal={**self.equal, "user": (user,)})

    def single(self) -> dict[str, str]:
        """Store column -> value of the filters with one value (status only as success/error)."""
        out = {FILTERS[k]: v[0] for k, v in self.equal.items() if len(v) == 1}
        if len(self.status) == 1 and self.status[0] in USAGE_STATUSES:
            out["status"] = self.status[0]
        return out

    def several(self) -> dict[str, frozenset[str]]:
        """Store column -> values of the filters with several values (status too)."""
        out = {FILTERS[k]: frozenset(v) for k, v in self.equal.items() if len(v) > 1}
        if len(self.status) > 1:
            out["status"] = frozenset(self.status)
        return out

    def columns(self) -> dict[str, str]:
        """Store column -> value (for rollup queries; status only as success/error). Only for filters with one value
        each: `usage` reads any."""
        if self.several():
            raise ValueError("columns() takes one value per filter: use usage()")
        return self.single()

    def usage(
        self, store: Store, group_by: Sequence[str], start_ns: int, end_ns: int, extra: Mapping[str, str] | None = None
    ) -> list[UsageRow]:
        """`store.usage` with these filters (and `extra` column -> value ones): a filter with one value is the
        store's; one with several is grouped by, its rows kept when they hold one of the values, then summed back
        to `group_by`. One query either way."""
        if self.json or any(c.startswith(DIMENSION_PREFIX) for c in group_by):
            return self._record_usage(store, group_by, start_ns, end_ns, extra or {})
        single = {**self.single(), **(extra or {})}
        several = {c: v for c, v in self.several().items() if c not in single}
        if not several:
            return store.usage(group_by, start_ns, end_ns, single, self.http_status)
        wider = [*group_by, *(c for c in several if c not in group_by)]
        rows = store.usage(wider, start_ns, end_ns, single, self.http_status)
        kept = [row for row in rows if all(str(row[c]) in values for c, values in several.items())]
        if len(wider) == len(group_by):
            return kept
        sums: dict[tuple[Any, ...], UsageRow] = {}
        for row in kept:
            key = tuple(row[g] for g in group_by)
            total = sums.get(key)
            if total is None:
                sums[key] = {**{g: row[g] for g in group_by}, **{s: row[s] for s in SUMS}}
            else:
                for s in SUMS:
                    total[s] += row[s]  # type: ignore[operator]
        return list(sums.values())

    def _record_usage(
        self, store: Store, group_by: Sequence[str], start_ns: int, end_ns: int, extra: Mapping[str, str]
    ) -> list[UsageRow]:
        """`usage` read from the records (`store.record_usage`): for dimensions and request parameters."""
        found = self.selections(TimeRange("custom", start_ns, end_ns))
        status, equal = extra.get("status"), {c: v for c, v in extra.items() if c != "status"}
        found = [replace(s, equal={**s.equal, **equal}, status=status or s.status) for s in found]
        return store.record_usage(found, group_by)

    def selections(self, span: TimeRange) -> list[Selection]:
        """The store selections whose union is what these filters match: one per combination of the values."""
        names = list(self.equal)
        choices = [self.equal[n] for n in names]
        statuses: Sequence[str | None] = self.status or (None,)
        codes: Sequence[int | None] = self.http_status or (None,)
        count = len(statuses) * len(codes)
        for values in choices:
            count *= len(values)
        if count > MAX_COMBINATIONS:
            raise QueryError(
                f"the filters select {count:,} combinations of values, more than {MAX_COMBINATIONS}: "
                "choose fewer values (or All)"
            )
        return [
            Selection(
                span.start_ns,
                span.end_ns,
                {FILTERS[n]: v for n, v in zip(names, combo, strict=True)},
                status,
                json=self.json,
                http_status=code,
            )
            for combo in itertools.product(*choices)
            for status in statuses
            for code in codes
        ]

    def selection(self, span: TimeRange) -> Selection:
        """The store selection of filters with one value each (`selections`, `page` and `records` take any)."""
        found = self.selections(span)
        if len(found) != 1:
            raise ValueError("selection() takes one value per filter: use selections(), page() or records()")
        return found[0]

    def page(
        self,
        store: Store,
        span: TimeRange,
        limit: int,
        cursor: Cursor | None = None,
        *,
        newest_first: bool = True,
        sort: str = "time",
    ) -> tuple[list[Record], Cursor | None]:
        """A page of the records these filters match, as `store.page`: with several values, each combination's
        page (from the same snapshot and position) merged in page order."""
        selections = self.selections(span)
        if len(selections) == 1:
            return store.page(selections[0], limit, cursor, newest_first=newest_first, sort=sort)
        if cursor is None:  # every combination from the same snapshot, before the first record in page order
            edge = float("inf") if newest_first else float("-inf")
            cursor = Cursor(store.snapshot(), span.end_ns if newest_first else span.start_ns - 1, "", sort, edge)
        merged: dict[str, Record] = {}
        more = False
        for selection in selections:
            records, following = store.page(selection, limit, cursor, newest_first=newest_first, sort=sort)
            more = more or following is not None
            for record in records:
                merged[record.record_id] = record
        ordered = sorted(merged.values(), key=lambda r: (sort_value(r, sort), r.record_id), reverse=newest_first)
        taken = ordered[:limit]
        if not taken or (len(ordered) <= limit and not more):
            return taken, None
        last = taken[-1]
        return taken, Cursor(cursor.snapshot, last.start_time_ns, last.record_id, sort, sort_value(last, sort))

    def records(self, store: Store, span: TimeRange, chunk: int = 2000) -> Iterator[Record]:
        """Every record these filters match, oldest first, a page at a time (constant memory). Filters that cannot
        be used are refused here, before the first record is read (an export has not started answering yet)."""
        self.selections(span)
        return self._records(store, span, chunk)

    def _records(self, store: Store, span: TimeRange, chunk: int) -> Iterator[Record]:
        page, cursor = self.page(store, span, chunk, newest_first=False)
        yield from page
        while cursor is not None:
            page, cursor = self.page(store, span, chunk, cursor, newest_first=False)
            yield from page

    def count(self, store: Store, span: TimeRange) -> int:
        """How many records these filters match."""
        selections = self.selections(span)
        if len(selections) == 1 or len(self.status) <= 1:  # combinations of one status each are disjoint
            return sum(store.count_matching(s) for s in selections)
        return sum(1 for _ in self.records(store, span))

    def as_json(self) -> dict[str, str | list[str]]:
        out: dict[str, str | list[str]] = {k: v[0] if len(v) == 1 else list(v) for k, v in self.equal.items()}
        if self.status:
            out["status"] = self.status[0] if len(self.status) == 1 else list(self.status)
        if self.http_status:
            codes = [str(c) for c in self.http_status]
            out["http_status"] = codes[0] if len(codes) == 1 else codes
        for (column, key), values in self.json.items():
            out[f"param.{key}" if column == "params" else key] = values[0] if len(values) == 1 else list(values)
        return out


def http_statuses(status: Sequence[str], http_status: Sequence[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """`status` values split into named statuses and HTTP status codes (`status=429` is `http_status=429`), and
    the codes of both, checked."""
    codes = [s for s in status if s.isdigit()]
    named = tuple(s for s in status if not s.isdigit())
    if codes and named:
        raise QueryError("status takes statuses (success, error, ...) or HTTP status codes, not both at once")
    out = []
    for code in (*codes, *http_status):
        if not (code.isascii() and code.isdigit() and 100 <= int(code) <= 599):
            raise QueryError(f"an HTTP status must be a code from 100 to 599, not {code!r}")
        out.append(int(code))
    return named, tuple(dict.fromkeys(out))


SORTS = tuple(f"{sign}{name}" for name in SORT_KEYS for sign in ("-", ""))


def sort_order(text: str | None) -> tuple[str, bool]:
    """A request-log `sort` (time, cost, latency or tokens; a leading - for descending; default -time, newest
    first) -> (SORT_KEYS name, descending)."""
    text = (text or "-time").strip()
    name = text.removeprefix("-")
    if name not in SORT_KEYS:
        raise QueryError(f"sort must be one of {', '.join(SORTS)}, not {text!r}")
    return name, text.startswith("-")


def group_by(text: str | None, dimensions: Sequence[str] = ()) -> list[str]:
    """A comma-separated group_by list (public names, and the declared custom `dimensions`) -> the names, checked."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in GROUPS and n not in dimensions]
    if unknown:
        known = ", ".join((*GROUPS, *dimensions))
        raise QueryError(f"group_by: unknown name(s) {', '.join(unknown)}; known: {known}")
    if len(set(names)) != len(names):
        raise QueryError(f"group_by names must be distinct, got {text!r}")
    if len([n for n in names if n in TIME_GROUPS]) > 1:
        raise QueryError(f"group_by takes one of {', '.join(TIME_GROUPS)}, not several")
    return names


def group_column(name: str) -> str:
    """The usage row's column of a group name (a custom dimension's: `dim.<key>`)."""
    return _GROUP_COLUMNS.get(name) or DIMENSION_PREFIX + name


def buckets(span: TimeRange, width_ns: int) -> list[int]:
    """Start of every `width_ns` bucket (UTC) that overlaps the range."""
    first = span.start_ns - span.start_ns % width_ns
    return list(range(first, span.end_ns, width_ns))


BUCKET_WIDTH = {"hour": HOUR_NS, "day": DAY_NS}
TIME_GROUPS = (*BUCKET_WIDTH, *PERIODS)


def check_buckets(span: TimeRange, names: Sequence[str]) -> None:
    """Refuses an hour or day grouping with more than MAX_BUCKETS buckets over the range, a week or month one with
    more than MAX_PERIODS."""
    for name in names:
        if name in BUCKET_WIDTH:
            width = BUCKET_WIDTH[name]
            count = -(-(span.end_ns - (span.start_ns - span.start_ns % width)) // width)
            if count > MAX_BUCKETS:
                raise QueryError(
                    f"group_by={name} over this range gives {count:,} buckets, more than {MAX_BUCKETS:,}: "
                    "use a shorter range or a coarser bucket"
                )
        if name in PERIODS:
            count = len(periods(span.start_ns, span.end_ns, name, ZoneInfo("UTC")))
            if count > MAX_PERIODS:
                raise QueryError(
                    f"group_by={name} over this range gives {count:,} buckets, more than {MAX_PERIODS}: "
                    "use a shorter range or a coarser bucket"
                )
