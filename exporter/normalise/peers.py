"""Other instrumentations' vocabulary mapped onto llmtally's: error types, and their token conventions.

Error types: llmtally's bounded set (the instrumentation's `errors.ERROR_TYPES`), from what peers write in
`error.type`: exception class names, bare
(`RateLimitError`, OpenLLMetry, OpenLIT) or qualified (`openai.RateLimitError`, the official GenAI
instrumentations), provider error codes (`rate_limit_error`, `insufficient_quota`) and HTTP status codes (`429`,
the official google-genai instrumentation).

Token conventions: the GenAI semconv's `gen_ai.usage.input_tokens` includes cache reads and writes, and
`gen_ai.usage.output_tokens` includes reasoning. OpenLIT writes Anthropic's and Bedrock's `input_tokens` as those APIs
report them, without the cache tokens (openlit 1.45: `instrumentation/anthropic/utils.py`,
`instrumentation/bedrock/utils.py`, priced there with `prompt_tokens_include_cache=False`), and Gemini's
`output_tokens` without its thoughts, which it writes as `gen_ai.usage.reasoning_tokens`
(`instrumentation/google_ai_studio/utils.py`: `candidates_token_count`, `thoughts_token_count`). The other peers
follow the semconv (OpenLLMetry, the official GenAI instrumentations, the Anthropic SDK's own spans).
"""

from __future__ import annotations

from functools import lru_cache

from ...instrumentation.errors import (
    AUTH_ERROR,
    CONNECTION_ERROR,
    ERROR_TYPES,
    INVALID_REQUEST,
    MODEL_ERROR,
    OTHER,
    RATE_LIMIT,
    SERVER_ERROR,
    STREAM_ERROR,
    TIMEOUT,
    from_status,
)

# (source, provider) whose `input_tokens` exclude cache reads and writes; whose `output_tokens` exclude reasoning.
INPUT_WITHOUT_CACHE = frozenset({("openlit", "anthropic"), ("openlit", "aws.bedrock")})
OUTPUT_WITHOUT_REASONING = frozenset({("openlit", "gemini")})

# Pieces of a lower-cased name without `_`, `-` or spaces -> error type; the first rule that matches wins
# ("context": a context length or window exceeded).
_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("ratelimit", "throttl", "quota", "resourceexhausted", "toomanyrequests"), RATE_LIMIT),
    (("timeout", "timedout", "deadline"), TIMEOUT),
    (("auth", "permission", "accessdenied", "forbidden", "apikey"), AUTH_ERROR),
    (("stream",), STREAM_ERROR),
    (("notfound", "modelerror", "modelnotready"), MODEL_ERROR),
    (("connect", "protocolerror", "readerror", "networkerror"), CONNECTION_ERROR),
    (("badrequest", "invalid", "validation", "unprocessable", "conflict", "toolarge", "context"), INVALID_REQUEST),
    (("server", "internal", "overloaded", "unavailable", "apierror", "gateway"), SERVER_ERROR),
)


@lru_cache(maxsize=4096)
def error_type(found: str) -> str:
    """llmtally's error type for a peer's `error.type` (`_OTHER` when it says nothing llmtally can map)."""
    name = found.strip()
    if name in ERROR_TYPES:
        return name
    if len(name) == 3 and name.isascii() and name.isdigit():
        return from_status(int(name)) if int(name) >= 400 else OTHER
    name = name.rsplit(".", 1)[-1].lower().replace("_", "").replace("-", "").replace(" ", "")
    for pieces, kind in _RULES:
        if any(piece in name for piece in pieces):
            return kind
    return OTHER


def semconv_counts(
    source: str, provider: str, input_tokens: int, output_tokens: int, cached: int, cache_write: int, reasoning: int
) -> tuple[int, int]:
    """(input, output) tokens as the semconv counts them (cache reads and writes in the input, reasoning in the
    output), whoever wrote them."""
    if source in _CORRECTED:
        peer = (source, provider)
        if peer in INPUT_WITHOUT_CACHE:
            input_tokens += cached + cache_write
        if peer in OUTPUT_WITHOUT_REASONING:
            output_tokens += reasoning
    return input_tokens, output_tokens


_CORRECTED = frozenset(source for source, _ in INPUT_WITHOUT_CACHE | OUTPUT_WITHOUT_REASONING)
