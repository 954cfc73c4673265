"""Prompt and response capture: off unless asked for, redacted, and capped in size."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

TRUNCATED = "...[truncated]"


def redact(text: str, patterns: Iterable[re.Pattern[str]]) -> str:
    for pattern in patterns:
        text = pattern.sub("[REDACTED]", text)
    return text


def cap(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` UTF-8 bytes, marked when cut."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    keep = max(0, max_bytes - len(TRUNCATED))
    return data[:keep].decode("utf-8", "ignore") + TRUNCATED


def input_messages(body: Mapping[str, Any], patterns: Iterable[re.Pattern[str]], max_bytes: int) -> str:
    """The request's prompt fields (messages, input, prompt, system, instructions) as JSON."""
    text = json.dumps(dict(body), ensure_ascii=False, default=str, separators=(",", ":"))
    return cap(redact(text, patterns), max_bytes)


def output_messages(
    texts: list[str], finish_reasons: list[str], patterns: Iterable[re.Pattern[str]], max_bytes: int
) -> str:
    """The response text in the GenAI semconv output-message shape."""
    message = {
        "role": "assistant",
        "parts": [{"type": "text", "content": "".join(texts)}],
        "finish_reason": finish_reasons[0] if finish_reasons else None,
    }
    return cap(redact(json.dumps([message], ensure_ascii=False), patterns), max_bytes)
