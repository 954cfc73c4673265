"""The model parameters a request asked for (`Record.params`): a bounded, typed set read from `gen_ai.request.*`
and the names peers use for the same; never content (no prompt, tool definition or schema).

A value of the wrong type, not finite or out of range is left out (it only describes the record); stop sequences
are kept up to `MAX_STOP_SEQUENCES` of at most `MAX_PARAM_TEXT` characters each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["number", "integer", "text", "texts"]
MAX_PARAM_TEXT = 64  # characters of a text parameter (reasoning effort, response format) or of one stop sequence
MAX_STOP_SEQUENCES = 16
_INT_BOUND = 2**63  # a 64-bit integer (seeds)
_NUMBER_BOUND = 1e15


@dataclass(frozen=True)
class Param:
    """One stored parameter: its name in `Record.params`, its kind, and the attributes it is read from (first
    present wins)."""

    name: str
    kind: Kind
    attributes: tuple[str, ...]
    help: str


PARAMS: tuple[Param, ...] = (
    Param("temperature", "number", ("gen_ai.request.temperature",), "sampling temperature"),
    Param("top_p", "number", ("gen_ai.request.top_p",), "nucleus sampling probability"),
    Param("top_k", "number", ("gen_ai.request.top_k", "llm.top_k"), "top-k sampling"),
    Param(
        "max_tokens",
        "integer",
        ("gen_ai.request.max_tokens", "gen_ai.request.max_completion_tokens"),
        "output token limit (max_tokens, max_completion_tokens, max_output_tokens, maxOutputTokens...)",
    ),
    Param(
        "frequency_penalty",
        "number",
        ("gen_ai.request.frequency_penalty", "llm.frequency_penalty"),
        "frequency penalty",
    ),
    Param(
        "presence_penalty", "number", ("gen_ai.request.presence_penalty", "llm.presence_penalty"), "presence penalty"
    ),
    Param("seed", "integer", ("gen_ai.request.seed",), "sampling seed"),
    Param("choice_count", "integer", ("gen_ai.request.choice.count", "gen_ai.request.n"), "choices asked for (n)"),
    Param(
        "stop_sequences",
        "texts",
        ("gen_ai.request.stop_sequences", "llm.chat.stop_sequences"),
        f"stop sequences (at most {MAX_STOP_SEQUENCES}, each cut to {MAX_PARAM_TEXT} characters)",
    ),
    Param(
        "reasoning_effort",
        "text",
        ("gen_ai.request.reasoning_effort", "llm.request.reasoning_effort"),
        "reasoning effort (low, medium, high...)",
    ),
    Param(
        "response_format",
        "text",
        ("llmtally.request.response_format", "gen_ai.output.type"),
        "response format type (text, json_object, json_schema; a peer's output type: json, text...)",
    ),
    Param("tool_count", "integer", ("llmtally.request.tool_count",), "tools offered to the model"),
)
BY_NAME = {p.name: p for p in PARAMS}
_ATTRIBUTES = frozenset(a for p in PARAMS for a in p.attributes)


def request_params(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters these attributes name, by `Param.name` ({} when none, the usual case without a scan)."""
    if _ATTRIBUTES.isdisjoint(attrs):
        return {}
    out: dict[str, Any] = {}
    for param in PARAMS:
        for attribute in param.attributes:
            found = attrs.get(attribute)
            if found is None:
                continue
            value = typed(param.kind, found)
            if value is not None:
                out[param.name] = value
                break
    return out


def typed(kind: Kind, found: Any) -> Any:
    """`found` as a value of `kind`; None when it is not one."""
    if kind == "texts":
        items = [found] if isinstance(found, str) else found if isinstance(found, (list, tuple)) else None
        if items is None or not all(isinstance(i, str) for i in items):
            return None
        return [i[:MAX_PARAM_TEXT] for i in items[:MAX_STOP_SEQUENCES]]
    if kind == "text":
        return found[:MAX_PARAM_TEXT] if isinstance(found, str) and found else None
    if isinstance(found, bool) or not isinstance(found, (int, float)):
        return None
    if kind == "integer":
        if isinstance(found, float) and not (math.isfinite(found) and found.is_integer()):
            return None
        return int(found) if -_INT_BOUND < found < _INT_BOUND else None
    return found if math.isfinite(found) and -_NUMBER_BOUND <= found <= _NUMBER_BOUND else None
