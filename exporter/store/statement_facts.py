"""What a statement adds to the usage sums, read in one aggregate query over the records: per group and per priced
model, the price sources used, the requests charged (whose fixed fee the pricing gives) and the records repriced."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .record_usage import any_of, group_sql
from .rollup import RECORDS
from .select import Selection

FACTS = ("provider", "response_model", "request_model", "price_source", "priced", "requests", "charged", "repriced")
REPRICED_EVENT = '%"repriced"%'  # the events JSON of a record repriced (`maintenance.reprice`)


def statement_facts_sql(
    selections: Sequence[Selection], group_by: Sequence[str], placeholder: str
) -> tuple[str, list[Any], tuple[str, ...]]:
    """The query over the records matching any of `selections` (disjoint), grouped by `group_by` (as
    `record_usage_sql`) and the price each record used; its parameters and column names."""
    where, params = any_of(selections, placeholder)
    groups = [f"{group_sql(g, placeholder)} AS g{i}" for i, g in enumerate(group_by)]
    keys = [
        "provider",
        "COALESCE(response_model, '')",
        "request_model",
        "COALESCE(price_source, '')",
        "CASE WHEN priced THEN 1 ELSE 0 END",
    ]
    sums = [
        "COUNT(*)",
        "SUM(CASE WHEN priced AND COALESCE(customer_cost_nusd, 0) <> 0 THEN 1 ELSE 0 END)",
        f"SUM(CASE WHEN events LIKE {placeholder} THEN 1 ELSE 0 END)",
    ]
    ordinals = ", ".join(str(i + 1) for i in range(len(groups) + len(keys)))
    sql = f"SELECT {', '.join([*groups, *keys, *sums])} FROM {RECORDS} WHERE {where} GROUP BY {ordinals}"
    return sql, [REPRICED_EVENT, *params], (*group_by, *FACTS)
