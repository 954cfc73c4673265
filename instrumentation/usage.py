"""Token counts in one shape, from each provider's usage object.

Follows the GenAI semconv and genai-prices: input includes cache reads and cache writes, output includes
reasoning; cache reads, cache writes and reasoning are also kept on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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


def _int(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0  # JSON numbers: exactly int (bool is no int here)


def _details(usage: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    details = usage.get(name)
    return details if isinstance(details, Mapping) else _NO_DETAILS


_NO_DETAILS: Mapping[str, Any] = {}


def from_openai(usage: Mapping[str, Any]) -> Usage:
    """Chat/legacy completions (`prompt_tokens`...), Responses (`input_tokens`...) and embeddings usage.

    Audio tokens (`prompt_tokens_details.audio_tokens`, `completion_tokens_details.audio_tokens`) are kept apart.
    Also reads the OpenAI-compatible variants: DeepSeek's `prompt_cache_hit_tokens` and the
    `cache_write_tokens` / `cache_creation_input_tokens` detail that OpenRouter and others report.
    """
    get = usage.get
    prompt = _int(get("prompt_tokens")) or _int(get("input_tokens"))
    completion = _int(get("completion_tokens")) or _int(get("output_tokens"))
    prompt_details = _details(usage, "prompt_tokens_details")
    input_details = _details(usage, "input_tokens_details")
    cached = (
        _int(prompt_details.get("cached_tokens"))
        or _int(input_details.get("cached_tokens"))
        or _int(get("prompt_cache_hit_tokens"))
    )
    cache_write = (
        _int(prompt_details.get("cache_write_tokens"))
        or _int(prompt_details.get("cache_creation_input_tokens"))
        or _int(input_details.get("cache_write_tokens"))
    )
    completion_details = _details(usage, "completion_tokens_details")
    output_details = _details(usage, "output_tokens_details")
    reasoning = _int(completion_details.get("reasoning_tokens")) or _int(output_details.get("reasoning_tokens"))
    input_audio = _int(prompt_details.get("audio_tokens")) or _int(input_details.get("audio_tokens"))
    output_audio = _int(completion_details.get("audio_tokens")) or _int(output_details.get("audio_tokens"))
    total = _int(get("total_tokens")) or prompt + completion
    return Usage(
        prompt, completion, total, cached, cache_write, reasoning, input_audio=input_audio, output_audio=output_audio
    )


def from_anthropic(usage: Mapping[str, Any]) -> Usage:
    """Anthropic Messages usage; its `input_tokens` excludes cache reads and cache writes. Cache writes split by
    lifetime under `cache_creation` (`ephemeral_5m_input_tokens`, `ephemeral_1h_input_tokens`); web searches under
    `server_tool_use.web_search_requests`."""
    read = _int(usage.get("cache_read_input_tokens"))
    creation = _details(usage, "cache_creation")
    write_1h = _int(creation.get("ephemeral_1h_input_tokens"))
    write = _int(usage.get("cache_creation_input_tokens")) or _int(creation.get("ephemeral_5m_input_tokens")) + write_1h
    prompt = _int(usage.get("input_tokens")) + read + write
    completion = _int(usage.get("output_tokens"))
    searches = _int(_details(usage, "server_tool_use").get("web_search_requests"))
    return Usage(prompt, completion, prompt + completion, read, write, 0, min(write_1h, write), web_searches=searches)


def from_ollama(body: Mapping[str, Any]) -> Usage:
    """Ollama's native `/api/chat` and `/api/generate` counts."""
    prompt = _int(body.get("prompt_eval_count"))
    completion = _int(body.get("eval_count"))
    return Usage(prompt, completion, prompt + completion)
