"""SQL over the records' JSON object columns (`params`, `dimensions`), for both dialects: a key's value compared,
or grouped by. Keys are checked names (`[a-z_][a-z0-9_]*`), written into the SQL; values are parameters."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

PARAMS_COLUMN = "params"
DIMENSIONS_COLUMN = "dimensions"
# (column, key) -> the accepted values (a record matches one of them).
JsonFilters = Mapping[tuple[str, str], tuple[Any, ...]]
_KEY = re.compile(r"[a-z_][a-z0-9_]{0,63}")
_COLUMNS = (PARAMS_COLUMN, DIMENSIONS_COLUMN)


def _checked(column: str, key: str) -> None:
    if column not in _COLUMNS or not _KEY.fullmatch(key):
        raise ValueError(f"not a JSON column and key: {column!r}, {key!r}")


def is_sqlite(placeholder: str) -> bool:
    return placeholder == "?"


def matches(column: str, key: str, values: Sequence[Any], placeholder: str) -> tuple[str, list[Any]]:
    """A condition: the key's value is one of `values` (numbers compare as numbers: 1 matches 1.0)."""
    _checked(column, key)
    marks = ", ".join([f"{placeholder}::jsonb" if not is_sqlite(placeholder) else placeholder] * len(values))
    if is_sqlite(placeholder):
        return f"json_extract({column}, '$.{key}') IN ({marks})", list(values)
    return f"(CAST({column} AS jsonb) -> '{key}') IN ({marks})", [json.dumps(v) for v in values]


def text_of(column: str, key: str, placeholder: str) -> str:
    """The key's value as text ('' when absent), for grouping by a dimension."""
    _checked(column, key)
    if is_sqlite(placeholder):
        return f"COALESCE(json_extract({column}, '$.{key}'), '')"
    return f"COALESCE(CAST({column} AS jsonb) ->> '{key}', '')"


def where(filters: JsonFilters, placeholder: str) -> tuple[list[str], list[Any]]:
    """The conditions of every JSON filter, and their parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    for (column, key), values in filters.items():
        clause, found = matches(column, key, values, placeholder)
        clauses.append(clause)
        params += found
    return clauses, params
