"""The query parameters of the JSON-column filters (`extra_filters`): `param.<name>` and one per declared custom
dimension, each in the OpenAPI document with its type."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Annotated

from fastapi import Query

from ..normalise.request_params import BY_NAME
from .extra_filters import PARAM_FILTERS, PARAM_PREFIX


def query_dependency(dimensions: Sequence[str]) -> Callable[..., dict[str, list[str]]]:
    """A FastAPI dependency taking the `param.<name>` query parameters and one per declared dimension (each listed
    in the OpenAPI document with its type), returning those given by name."""
    names = [*PARAM_FILTERS, *dimensions]
    parameters = [
        inspect.Parameter(
            f"extra_{i}",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[list[str] | None, Query(alias=name, description=_help(name))],
        )
        for i, name in enumerate(names)
    ]

    def given(**values: list[str] | None) -> dict[str, list[str]]:
        return {names[int(k.removeprefix("extra_"))]: v for k, v in values.items() if v is not None}

    given.__signature__ = inspect.Signature(parameters, return_annotation=dict[str, list[str]])  # type: ignore[attr-defined]
    return given


def _help(name: str) -> str:
    several = "; several values: repeat the parameter or separate them with commas (a record matches one)"
    if name.startswith(PARAM_PREFIX):
        param = BY_NAME[name.removeprefix(PARAM_PREFIX)]
        kind = {"number": "a number", "integer": "a whole number"}.get(param.kind, "text")
        return f"request parameter: {param.help} ({kind}, compared exactly: 0.2 matches 0.20)" + several
    return f"custom dimension {name} (declared in dimensions:)" + several
