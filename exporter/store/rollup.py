"""Hourly rollups: per-key sums of the newly stored records, and the usage query that reads them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..normalise.record import STATUS_ERROR, Record

HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS

TABLE = "completion_rollup_hourly"
# Dimensions of the rollup key (after hour_start_ns); a missing one is stored as ''.
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
)
KEY = ("hour_start_ns", *DIMENSIONS)
INT_SUMS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "provider_cost_nusd",
    "customer_cost_nusd",
    "unpriced_requests",
)
FLOAT_SUMS = ("duration_s_sum", "ttft_s_sum")
SUMS = (*INT_SUMS, *FLOAT_SUMS, "ttft_count")
# What usage() may group by: the key's dimensions plus time buckets (UTC).
GROUPS = (*DIMENSIONS, "hour", "day")
_GROUP_SQL = {
    **{d: d for d in DIMENSIONS},
    "hour": "hour_start_ns",
    "day": f"(hour_start_ns / {DAY_NS}) * {DAY_NS}",
}

UsageRow = dict[str, str | int | float]


def aggregate(records: Iterable[Record]) -> list[tuple[Any, ...]]:
    """One row per rollup key (key columns then `SUMS`), sorted by key so concurrent writers lock in one order."""
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


def upsert_sql(placeholder: str) -> str:
    """The statement that adds one `aggregate()` row to the stored sums (both dialects)."""
    columns = (*KEY, *SUMS)
    updates = ", ".join(f"{c} = {TABLE}.{c} + excluded.{c}" for c in SUMS)
    return (
        f"INSERT INTO {TABLE} ({', '.join(columns)}) VALUES ({', '.join([placeholder] * len(columns))}) "
        f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {updates}"
    )


def usage_sql(group_by: Sequence[str], placeholder: str) -> tuple[str, tuple[str, ...]]:
    """The usage query over hour buckets starting in [start, end) and the names of its result columns.

    Raises ValueError for a group name outside `GROUPS` or given twice.
    """
    unknown = [g for g in group_by if g not in _GROUP_SQL]
    if unknown or len(set(group_by)) != len(group_by):
        raise ValueError(f"group_by must be distinct names among {', '.join(GROUPS)}; got {list(group_by)}")
    selected = [f"{_GROUP_SQL[g]} AS {g}" for g in group_by]
    selected += [f"CAST(COALESCE(SUM({c}), 0) AS BIGINT) AS {c}" for c in (*INT_SUMS, "ttft_count")]
    selected += [f"COALESCE(SUM({c}), 0.0) AS {c}" for c in FLOAT_SUMS]
    where = f"hour_start_ns >= {placeholder} AND hour_start_ns < {placeholder}"
    sql = f"SELECT {', '.join(selected)} FROM {TABLE} WHERE {where}"
    if group_by:
        ordinals = ", ".join(str(i + 1) for i in range(len(group_by)))
        sql += f" GROUP BY {ordinals} ORDER BY {ordinals}"
    return sql, (*group_by, *INT_SUMS, "ttft_count", *FLOAT_SUMS)
