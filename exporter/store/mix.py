"""How requests were sent, which the rollups do not keep: streamed or not, per provider and requested model."""

from __future__ import annotations

from typing import Any

from .rollup import RECORDS
from .select import Selection


def streamed_sql(selection: Selection, placeholder: str) -> tuple[str, list[Any]]:
    """Requests and non-streamed requests per (provider, request_model) of the records of `selection`."""
    where, params = selection.where(placeholder)
    sql = (
        "SELECT provider, request_model, COUNT(*), SUM(CASE WHEN stream THEN 0 ELSE 1 END) "
        f"FROM {RECORDS} WHERE {where} GROUP BY provider, request_model"
    )
    return sql, params
