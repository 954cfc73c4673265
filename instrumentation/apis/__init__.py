"""The provider APIs llmtally reads, one module each, and which one a request path addresses.

Adding a provider API means adding its module (an `Endpoint` per request shape, see `base`) and listing its
`ENDPOINTS` here.
"""

from __future__ import annotations

from . import anthropic, bedrock, cohere, gemini, ollama, openai, openai_media, openai_responses
from .base import Answer, Endpoint, Request

__all__ = ["ENDPOINTS", "Answer", "Endpoint", "Request", "endpoint_for"]

# Checked in order: the first endpoint whose path test passes wins (Chat Completions before legacy Completions).
ENDPOINTS: tuple[Endpoint, ...] = (
    *openai.ENDPOINTS,
    *openai_responses.ENDPOINTS,
    *openai_media.ENDPOINTS,
    *anthropic.ENDPOINTS,
    *ollama.ENDPOINTS,
    *gemini.ENDPOINTS,
    *bedrock.ENDPOINTS,
    *cohere.ENDPOINTS,
)
_BY_API = {endpoint.api: endpoint for endpoint in ENDPOINTS}
_found: dict[str, Endpoint | None] = {}
MAX_CACHED_PATHS = 1024


def endpoint_for(path: str) -> Endpoint | None:
    """The endpoint a request path (without its query) addresses, or None for any other request."""
    try:
        return _found[path]
    except KeyError:
        pass
    trimmed = path.rstrip("/")
    found = next((e for e in ENDPOINTS if e.matches(trimmed)), None)
    if len(_found) >= MAX_CACHED_PATHS:
        _found.clear()
    _found[path] = found
    return found


def by_api(api: str) -> Endpoint:
    """The endpoint of an API name (`openai.chat`, `anthropic`, ...)."""
    return _BY_API[api]
