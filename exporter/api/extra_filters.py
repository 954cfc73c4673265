"""Filters on the records' JSON columns: request parameters (`param.<name>=value`, typed) and custom dimensions
(`<key>=value`, the keys declared in `dimensions:`). Several values of one filter: a record matches one of them."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ..normalise.request_params import BY_NAME
from ..store.json_sql import DIMENSIONS_COLUMN, PARAMS_COLUMN, JsonFilters
from .params import QueryError, values_of

PARAM_PREFIX = "param."
# Parameters a filter may name: the scalar ones (stop sequences are a list).
FILTERABLE = tuple(name for name, p in BY_NAME.items() if p.kind != "texts")
PARAM_FILTERS = tuple(PARAM_PREFIX + name for name in FILTERABLE)


def parse(given: Mapping[str, str | Sequence[str] | None], dimensions: Collection[str] = ()) -> JsonFilters:
    """`param.<name>` and declared dimension filters (each a value list, see `params.values_of`) -> the store's
    (column, key) -> values; a clear QueryError for an unknown name or a value of the wrong type."""
    out: dict[tuple[str, str], tuple[Any, ...]] = {}
    for name, raw in given.items():
        if raw is None:
            continue
        values = values_of(raw)
        if any("\x00" in v for v in values):
            raise QueryError(f"{name} must not contain NUL characters")
        if not values:
            continue
        if name.startswith(PARAM_PREFIX):
            key = name.removeprefix(PARAM_PREFIX)
            if key not in FILTERABLE:
                raise QueryError(f"unknown request parameter filter {name}; known: {', '.join(PARAM_FILTERS)}")
            out[(PARAMS_COLUMN, key)] = tuple(dict.fromkeys(_typed(name, BY_NAME[key].kind, v) for v in values))
        elif name in dimensions:
            out[(DIMENSIONS_COLUMN, name)] = values
        else:
            known = [*PARAM_FILTERS, *dimensions]
            raise QueryError(f"unknown filter {name}; known here: {', '.join(known)}")
    return out


def _typed(name: str, kind: str, text: str) -> Any:
    if kind == "text":
        return text
    try:
        value: int | float = int(text) if kind == "integer" else float(text)
    except ValueError:
        what = "a whole number" if kind == "integer" else "a number"
        raise QueryError(f"{name} must be {what}, not {text!r}") from None
    if not math.isfinite(value):
        raise QueryError(f"{name} must be a finite number, not {text!r}")
    return value


def pairs(items: Sequence[str] | None, option: str) -> dict[str, list[str]]:
    """`NAME=VALUE` command-line items (repeatable) -> name -> values."""
    out: dict[str, list[str]] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise QueryError(f"{option} takes NAME=VALUE, not {item!r}")
        out.setdefault(name.strip(), []).append(value)
    return out
