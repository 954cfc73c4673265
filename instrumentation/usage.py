"""Token counts in one shape, whatever the provider.

Follows the GenAI semconv and genai-prices: input includes cache reads and cache writes, output includes
reasoning; cache reads, cache writes and reasoning are also kept on their own. Each provider API module reads its
own usage object into this shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Usage a provider reports beyond the fields below, by genai-prices' usage key (`input_image_tokens`,
# `input_characters`, `audio_seconds`, ...), or `images` (generated images, priced by a configured per-image price).
ExtraUnits = dict[str, int]


@dataclass(slots=True)
class Usage:
    """Token counts of one request."""

    input: int = 0
    output: int = 0
    total: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    cache_write_1h: int = 0  # of cache_write, the tokens written to a 1-hour cache (Anthropic), priced apart
    input_audio: int = 0  # of input, audio tokens (OpenAI's audio models), priced apart
    output_audio: int = 0  # of output, audio tokens
    web_searches: int = 0  # server-side web searches the provider ran and bills (Anthropic's web search tool)
    extra: ExtraUnits = field(default_factory=dict)  # other billed units, by genai-prices usage key


def count(value: Any) -> int:
    """A token count from JSON: a positive int, else 0 (bool is no count here)."""
    return value if type(value) is int and value > 0 else 0


def details(usage: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A nested usage object, or an empty one."""
    found = usage.get(name)
    return found if isinstance(found, Mapping) else _NO_DETAILS


_NO_DETAILS: Mapping[str, Any] = {}
