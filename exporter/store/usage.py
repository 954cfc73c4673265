"""The usage query: sums over any time range, read from the narrowest rollup family that holds the query's groups
and filters (the full family when no narrower one does).

Exact for any bounds: whole days from the family's daily table, whole hours at the range's ends from its hourly one,
and the minutes before the first and after the last whole hour from the records themselves. Each (table, range)
part is its own branch of a UNION ALL, so that each is one range scan of its table's time index or key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .rollup import (
    DAY_NS,
    DIMENSIONS,
    FAMILIES,
    FLOAT_SUMS,
    HOUR_NS,
    INT_SUMS,
    NULLABLE,
    RAW_SUMS,
    RECORDS,
    SUMS,
    Family,
    bucket_start_sql,
)

TIME_GROUPS = ("hour", "day")
# What usage() may group by: the full key's dimensions plus time buckets (UTC).
GROUPS = (*DIMENSIONS, *TIME_GROUPS)
COLUMNS = (*INT_SUMS, "ttft_count", *FLOAT_SUMS)  # the sums of a usage row, in the order of the query's columns


def check_names(group_by: Sequence[str], filters: Mapping[str, str]) -> None:
    """Raises ValueError for a group outside `GROUPS` (or given twice) or a filter outside `DIMENSIONS`."""
    unknown = [g for g in group_by if g not in GROUPS]
    if unknown or len(set(group_by)) != len(group_by):
        raise ValueError(f"group_by must be distinct names among {', '.join(GROUPS)}; got {list(group_by)}")
    bad = [f for f in filters if f not in DIMENSIONS]
    if bad:
        raise ValueError(f"filters must be among {', '.join(DIMENSIONS)}; got {bad}")


def family_for(group_by: Sequence[str], filters: Mapping[str, str]) -> Family:
    """The first (narrowest) family of `FAMILIES` whose key holds every group and filter dimension."""
    needed = {g for g in group_by if g not in TIME_GROUPS} | set(filters)
    return next(f for f in FAMILIES if needed <= set(f.dimensions))


@dataclass(frozen=True)
class _Part:
    """One branch of a usage query: a table, its bucket column (None: the records) and the range [start, end)."""

    table: str
    bucket: str | None
    start: int
    end: int


def _ceil(t: int, width: int) -> int:
    return -(-t // width) * width


def _floor(t: int, width: int) -> int:
    return t - t % width


def _parts(family: Family, group_by: Sequence[str], start: int, end: int) -> list[_Part]:
    """Which table answers which part of [start, end): the widest rollup that fits, the records at the edges."""
    h0, h1 = _ceil(start, HOUR_NS), _floor(end, HOUR_NS)
    if h0 >= h1:
        return [_Part(RECORDS, None, start, end)]
    d0, d1 = _ceil(h0, DAY_NS), _floor(h1, DAY_NS)
    hourly, daily = family.hourly, family.daily
    parts = [_Part(RECORDS, None, start, h0)]
    if "hour" in group_by or d0 >= d1:
        parts.append(_Part(hourly.table, hourly.bucket, h0, h1))
    else:
        parts += [
            _Part(hourly.table, hourly.bucket, h0, d0),
            _Part(daily.table, daily.bucket, d0, d1),
            _Part(hourly.table, hourly.bucket, d1, h1),
        ]
    parts.append(_Part(RECORDS, None, h1, end))
    return [p for p in parts if p.start < p.end]


def _group_sql(name: str, part: _Part) -> str:
    time = part.bucket or "start_time_ns"
    if name == "hour":
        return time if part.bucket == "hour_start_ns" else bucket_start_sql(time, HOUR_NS)
    if name == "day":
        return time if part.bucket == "day_start_ns" else bucket_start_sql(time, DAY_NS)
    return f"COALESCE({name}, '')" if part.bucket is None and name in NULLABLE else name


def usage_sql(
    group_by: Sequence[str],
    start: int,
    end: int,
    filters: Mapping[str, str],
    placeholder: str,
    http_status: Sequence[int] = (),
) -> tuple[str, list[Any], tuple[str, ...]]:
    """The usage query for records starting in [start, end) that match `filters` (dimension -> value) and, when
    given, have one of the `http_status` codes (the rollups do not keep codes: then the records are read), its
    parameters and the names of its result columns (`group_by`, then the sums). Raises ValueError for bad names."""
    check_names(group_by, filters)
    p = placeholder
    branches: list[str] = []
    params: list[Any] = []
    parts = _parts(family_for(group_by, filters), group_by, start, end) if not http_status else []
    for part in parts or [_Part(RECORDS, None, start, end)]:
        time = part.bucket or "start_time_ns"
        where = [f"{time} >= {p}", f"{time} < {p}", *(f"{_group_sql(name, part)} = {p}" for name in filters)]
        params += [part.start, part.end, *filters.values()]
        if http_status:
            where.append(f"http_status IN ({', '.join(p for _ in http_status)})")
            params += [int(code) for code in http_status]
        groups = [f"{_group_sql(g, part)} AS g{i}" for i, g in enumerate(group_by)]
        sums = [f"{RAW_SUMS[c] if part.bucket is None else f'SUM({c})'} AS {c}" for c in SUMS]
        sql = f"SELECT {', '.join([*groups, *sums])} FROM {part.table} WHERE {' AND '.join(where)}"
        if group_by:
            sql += f" GROUP BY {', '.join(str(i + 1) for i in range(len(group_by)))}"
        branches.append(sql)
    outer = [f"g{i} AS {g}" for i, g in enumerate(group_by)]
    outer += [f"CAST(COALESCE(SUM({c}), 0) AS BIGINT) AS {c}" for c in (*INT_SUMS, "ttft_count")]
    outer += [f"COALESCE(SUM({c}), 0.0) AS {c}" for c in FLOAT_SUMS]
    sql = f"SELECT {', '.join(outer)} FROM ({' UNION ALL '.join(branches)}) AS parts"
    if group_by:
        ordinals = ", ".join(str(i + 1) for i in range(len(group_by)))
        sql += f" GROUP BY {ordinals} ORDER BY {ordinals}"
    return sql, params, (*group_by, *COLUMNS)
