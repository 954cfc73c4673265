"""How requests were sent, which the rollups do not keep: streamed or not, per provider and requested model."""

from __future__ import annotations

from typing import Any

from .rollup import RECORDS
from .select import Selection


def streamed_sql(selection: Selection, placeholder: str, newest: int) -> tuple[str, list[Any]]:
    """Requests and non-streamed requests per (provider, request_model) of the `newest` records of `selection` (a
    bounded read: the newest first, along the time index)."""
    where, params = selection.where(placeholder)
    recent = (
        f"SELECT provider, request_model, stream FROM {RECORDS} WHERE {where} "
        f"ORDER BY start_time_ns DESC LIMIT {placeholder}"
    )
    sql = (
        "SELECT provider, request_model, COUNT(*), SUM(CASE WHEN stream THEN 0 ELSE 1 END) "
        f"FROM ({recent}) AS recent GROUP BY provider, request_model"
    )
    return sql, [*params, newest]
