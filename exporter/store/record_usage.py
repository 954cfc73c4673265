"""Usage sums read from the records themselves: for groups and filters the rollups do not key (custom dimensions,
request parameters). Exact by construction (the same sums as the rollups', over the matching records); one scan of
the range's records, so slower than the rollups over long ranges."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .json_sql import DIMENSIONS_COLUMN, text_of
from .rollup import DAY_NS, DIMENSIONS, FLOAT_SUMS, HOUR_NS, INT_SUMS, NULLABLE, RAW_SUMS, RECORDS, bucket_start_sql
from .select import Selection
from .usage import COLUMNS

DIMENSION_PREFIX = "dim."  # a group `dim.<key>`: the custom dimension <key> ('' when a record has none)
_TIME = {"hour": HOUR_NS, "day": DAY_NS}


def group_sql(name: str, placeholder: str) -> str:
    """A group's SQL over the records: a rollup dimension, hour, day or `dim.<key>`."""
    if name in _TIME:
        return bucket_start_sql("start_time_ns", _TIME[name])
    if name.startswith(DIMENSION_PREFIX):
        return text_of(DIMENSIONS_COLUMN, name.removeprefix(DIMENSION_PREFIX), placeholder)
    if name not in DIMENSIONS:
        raise ValueError(f"cannot group records by {name!r}")
    return f"COALESCE({name}, '')" if name in NULLABLE else name


def any_of(selections: Sequence[Selection], placeholder: str) -> tuple[str, list[Any]]:
    """The condition of a record matching any of `selections`, and its parameters."""
    if not selections:
        raise ValueError("a query over the records needs at least one selection")
    conditions, params = [], []
    for selection in selections:
        where, found = selection.where(placeholder)
        conditions.append(f"({where})")
        params += found
    return " OR ".join(conditions), params


def record_usage_sql(
    selections: Sequence[Selection], group_by: Sequence[str], placeholder: str
) -> tuple[str, list[Any], tuple[str, ...]]:
    """The usage query over the records matching any of `selections` (disjoint ones: each record is counted once
    anyway), grouped by `group_by` (rollup dimensions, hour, day, `dim.<key>`); its parameters and column names."""
    where, params = any_of(selections, placeholder)
    groups = [f"{group_sql(g, placeholder)} AS g{i}" for i, g in enumerate(group_by)]
    sums = [f"CAST(COALESCE({RAW_SUMS[c]}, 0) AS BIGINT) AS {c}" for c in (*INT_SUMS, "ttft_count")]
    sums += [f"COALESCE({RAW_SUMS[c]}, 0.0) AS {c}" for c in FLOAT_SUMS]
    sql = f"SELECT {', '.join([*groups, *sums])} FROM {RECORDS} WHERE {where}"
    if group_by:
        ordinals = ", ".join(str(i + 1) for i in range(len(group_by)))
        sql += f" GROUP BY {ordinals} ORDER BY {ordinals}"
    return sql, params, (*group_by, *COLUMNS)
