"""Rollups: per-key sums of the stored records by hour and by day, and the usage query that reads them.

Both tables have the same key (a bucket start, then `DIMENSIONS`) and the same sums; the daily one is what makes a
30-day report read a few thousand rows instead of every hour's. `usage_sql()` answers for any time range exactly:
whole days from the daily table, whole hours at the range's ends from the hourly one, and the minutes before the
first and after the last whole hour from the records themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..normalise.record import STATUS_ERROR, Record

HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS
RECORDS = "completion_records"
BIGINT_MAX = 2**63 - 1


@dataclass(frozen=True)
class Rollup:
    table: str
    bucket: str  # the key's first column: the bucket's start, ns since the epoch (UTC)
    width_ns: int


HOURLY = Rollup("completion_rollup_hourly", "hour_start_ns", HOUR_NS)
DAILY = Rollup("completion_rollup_daily", "day_start_ns", DAY_NS)
ROLLUPS = (HOURLY, DAILY)
# Dimensions of the rollup key (after the bucket); a missing one is stored as ''.
DIMENSIONS = (
    "provider",
    "operation",
    "request_model",
    "response_model",
    "status",
    "error_type",
    "user_id",
    "api_key",
    "feature",
    "department",
    "environment",
    "service_tier",
)
KEY = (HOURLY.bucket, *DIMENSIONS)
TOKENS = ("input_tokens", "output_tokens", "total_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens")
INT_SUMS = (
    "requests",
    "errors",
    *TOKENS,
    "provider_cost_nusd",
    "customer_cost_nusd",
    "unpriced_requests",
)
FLOAT_SUMS = ("duration_s_sum", "ttft_s_sum")
SUMS = (*INT_SUMS, *FLOAT_SUMS, "ttft_count")
# What usage() may group by: the key's dimensions plus time buckets (UTC).
GROUPS = (*DIMENSIONS, "hour", "day")
# The same sums computed from completion_records rows (for the minutes outside whole hours).
_RAW_SUMS = {
    "requests": "COUNT(*)",
    "errors": f"SUM(CASE WHEN status = '{STATUS_ERROR}' THEN 1 ELSE 0 END)",
    **{c: f"SUM({c})" for c in TOKENS},
    "provider_cost_nusd": "SUM(COALESCE(provider_cost_nusd, 0))",
    "customer_cost_nusd": "SUM(COALESCE(customer_cost_nusd, 0))",
    "unpriced_requests": "SUM(CASE WHEN priced THEN 0 ELSE 1 END)",
    "duration_s_sum": "SUM(duration_s)",
    "ttft_s_sum": "SUM(COALESCE(ttft_s, 0.0))",
    "ttft_count": "COUNT(ttft_s)",
}
_NULLABLE = {"error_type", "user_id", "api_key", "feature", "department", "environment", "service_tier"}

UsageRow = dict[str, str | int | float]


def aggregate(records: Iterable[Record]) -> list[tuple[Any, ...]]:
    """One hourly row per rollup key (key columns then `SUMS`), sorted by key so concurrent writers lock in one
    order."""
    acc: dict[tuple[Any, ...], list[Any]] = {}
    for r in records:
        t = r.start_time_ns
        key = (
            t - t % HOUR_NS,
            r.provider,
            r.operation,
            r.request_model,
            r.response_model,
            r.status,
            r.error_type or "",
            r.user_id or "",
            r.api_key or "",
            r.feature or "",
            r.department or "",
            r.environment or "",
            r.service_tier or "",
        )
        s = acc.get(key)
        if s is None:
            s = acc[key] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0]
        s[0] += 1
        if r.status == STATUS_ERROR:
            s[1] += 1
        s[2] += r.input_tokens
        s[3] += r.output_tokens
        s[4] += r.total_tokens
        s[5] += r.cached_tokens
        s[6] += r.cache_write_tokens
        s[7] += r.reasoning_tokens
        if r.provider_cost_nusd is not None:
            s[8] += r.provider_cost_nusd
        if r.customer_cost_nusd is not None:
            s[9] += r.customer_cost_nusd
        if not r.priced:
            s[10] += 1
        s[11] += r.duration_s
        if r.ttft_s is not None:
            s[12] += r.ttft_s
            s[13] += 1
    return [(*key, *acc[key]) for key in sorted(acc)]


def coarsen(rows: Iterable[tuple[Any, ...]], width_ns: int) -> list[tuple[Any, ...]]:
    """`aggregate()` rows summed into buckets `width_ns` wide (hourly rows -> daily rows), sorted by key."""
    acc: dict[tuple[Any, ...], list[Any]] = {}
    n = len(KEY)
    for row in rows:
        key = (row[0] - row[0] % width_ns, *row[1:n])
        s = acc.get(key)
        if s is None:
            acc[key] = list(row[n:])
        else:
            for i, v in enumerate(row[n:]):
                s[i] += v
    return [(*key, *acc[key]) for key in sorted(acc)]


def upsert_sql(rollup: Rollup, placeholder: str, source: str | None = None, *, checked: bool = False) -> str:
    """The statement that adds rollup rows to the stored sums (both dialects): one row of values, or every row of
    the `source` table when given. `checked`: an integer sum that would pass BIGINT's range becomes NULL (refused by
    NOT NULL) instead of what SQLite makes of it, a float."""
    columns = ", ".join((rollup.bucket, *DIMENSIONS, *SUMS))
    key = ", ".join((rollup.bucket, *DIMENSIONS))
    values = ", ".join([placeholder] * (len(DIMENSIONS) + len(SUMS) + 1))
    rows = f"SELECT {columns} FROM {source} ORDER BY {key}" if source else f"VALUES ({values})"
    updates = ", ".join(f"{c} = {_add(rollup.table, c, checked and c not in FLOAT_SUMS)}" for c in SUMS)
    return f"INSERT INTO {rollup.table} ({columns}) {rows} ON CONFLICT ({key}) DO UPDATE SET {updates}"


def _add(table: str, column: str, checked: bool) -> str:
    total = f"{table}.{column} + excluded.{column}"
    if not checked:
        return total
    overflows = f"excluded.{column} > 0 AND {table}.{column} > {BIGINT_MAX} - excluded.{column}"
    return f"CASE WHEN {overflows} THEN NULL ELSE {total} END"


def bucket_start_sql(column: str, width_ns: int) -> str:
    """SQL for the start of the `width_ns` bucket holding `column` (both dialects). Integer division, not `%`: with
    psycopg's `%s` parameters a bare `%` in the statement is an incomplete placeholder."""
    return f"{column} / {width_ns} * {width_ns}"


def rebuild_sql(rollup: Rollup, placeholder: str) -> tuple[str, str]:
    """Statements that recompute one rollup over [start, end) (bucket-aligned) from the records: delete, insert."""
    p = placeholder
    delete = f"DELETE FROM {rollup.table} WHERE {rollup.bucket} >= {p} AND {rollup.bucket} < {p}"
    dims = [f"COALESCE({d}, '')" if d in _NULLABLE else d for d in DIMENSIONS]
    bucket = bucket_start_sql("start_time_ns", rollup.width_ns)
    sums = [_RAW_SUMS[c] for c in SUMS]
    ordinals = ", ".join(str(i + 1) for i in range(len(dims) + 1))
    insert = (
        f"INSERT INTO {rollup.table} ({', '.join((rollup.bucket, *DIMENSIONS, *SUMS))}) "
        f"SELECT {bucket}, {', '.join(dims)}, {', '.join(sums)} FROM {RECORDS} "
        f"WHERE start_time_ns >= {p} AND start_time_ns < {p} GROUP BY {ordinals}"
    )
    return delete, insert


def check_names(group_by: Sequence[str], filters: Mapping[str, str]) -> None:
    """Raises ValueError for a group outside `GROUPS` (or given twice) or a filter outside `DIMENSIONS`."""
    unknown = [g for g in group_by if g not in GROUPS]
    if unknown or len(set(group_by)) != len(group_by):
        raise ValueError(f"group_by must be distinct names among {', '.join(GROUPS)}; got {list(group_by)}")
    bad = [f for f in filters if f not in DIMENSIONS]
    if bad:
        raise ValueError(f"filters must be among {', '.join(DIMENSIONS)}; got {bad}")


def _ceil(t: int, width: int) -> int:
    return -(-t // width) * width


def _floor(t: int, width: int) -> int:
    return t - t % width


@dataclass(frozen=True)
class _Source:
    """One part of a usage query: a table, its bucket column (None: the records) and the time ranges it covers."""

    table: str
    bucket: str | None
    ranges: tuple[tuple[int, int], ...]


def _sources(group_by: Sequence[str], start: int, end: int) -> list[_Source]:
    """Which table answers which part of [start, end): the widest rollup that fits, the records at the edges."""
    h0, h1 = _ceil(start, HOUR_NS), _floor(end, HOUR_NS)
    if h0 >= h1:
        return [_Source(RECORDS, None, ((start, end),))]
    d0, d1 = _ceil(h0, DAY_NS), _floor(h1, DAY_NS)
    sources = [_Source(RECORDS, None, ((start, h0), (h1, end)))]
    if "hour" in group_by or d0 >= d1:
        sources.append(_Source(HOURLY.table, HOURLY.bucket, ((h0, h1),)))
    else:
        sources.append(_Source(HOURLY.table, HOURLY.bucket, ((h0, d0), (d1, h1))))
        sources.append(_Source(DAILY.table, DAILY.bucket, ((d0, d1),)))
    return [s for s in sources if any(a < b for a, b in s.ranges)]


def _group_sql(name: str, source: _Source) -> str:
    time = source.bucket or "start_time_ns"
    if name == "hour":
        return time if source.bucket == HOURLY.bucket else bucket_start_sql(time, HOUR_NS)
    if name == "day":
        return time if source.bucket == DAILY.bucket else bucket_start_sql(time, DAY_NS)
    return f"COALESCE({name}, '')" if source.bucket is None and name in _NULLABLE else name


def usage_sql(
    group_by: Sequence[str], start: int, end: int, filters: Mapping[str, str], placeholder: str
) -> tuple[str, list[Any], tuple[str, ...]]:
    """The usage query for records starting in [start, end) that match `filters` (dimension -> value), its
    parameters and the names of its result columns (`group_by`, then the sums). Raises ValueError for bad names."""
    check_names(group_by, filters)
    p = placeholder
    parts: list[str] = []
    params: list[Any] = []
    for source in _sources(group_by, start, end):
        time = source.bucket or "start_time_ns"
        ranges = [(a, b) for a, b in source.ranges if a < b]
        where = [" OR ".join(f"({time} >= {p} AND {time} < {p})" for _ in ranges)]
        params += [v for r in ranges for v in r]
        for name, value in filters.items():
            where.append(f"{_group_sql(name, source)} = {p}")
            params.append(value)
        groups = [f"{_group_sql(g, source)} AS g{i}" for i, g in enumerate(group_by)]
        sums = [f"{_RAW_SUMS[c] if source.bucket is None else f'SUM({c})'} AS {c}" for c in SUMS]
        sql = f"SELECT {', '.join([*groups, *sums])} FROM {source.table} WHERE ({where[0]})"
        sql += "".join(f" AND {w}" for w in where[1:])
        if group_by:
            sql += f" GROUP BY {', '.join(str(i + 1) for i in range(len(group_by)))}"
        parts.append(sql)
    outer = [f"g{i} AS {g}" for i, g in enumerate(group_by)]
    outer += [f"CAST(COALESCE(SUM({c}), 0) AS BIGINT) AS {c}" for c in (*INT_SUMS, "ttft_count")]
    outer += [f"COALESCE(SUM({c}), 0.0) AS {c}" for c in FLOAT_SUMS]
    sql = f"SELECT {', '.join(outer)} FROM ({' UNION ALL '.join(parts)}) AS parts"
    if group_by:
        ordinals = ", ".join(str(i + 1) for i in range(len(group_by)))
        sql += f" GROUP BY {ordinals} ORDER BY {ordinals}"
    return sql, params, (*group_by, *INT_SUMS, "ttft_count", *FLOAT_SUMS)
