"""`llmtally_http`: LLM API calls made with `httpx2` or `httpx` directly.

OpenAI-compatible and known provider APIs (OpenRouter, Groq, Together, Mistral, DeepSeek, xAI, Fireworks, vLLM,
Ollama's `/api/chat` and `/api/generate`, Azure OpenAI deployments), JSON and streamed answers. A call an SDK
hook already records is not recorded again.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from .. import runtime


class HTTPInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Records LLM API calls seen by `httpx2` / `httpx` clients that no SDK hook opened."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        runtime.activate("http", **kwargs)

    def _uninstrument(self, **kwargs: Any) -> None:
        runtime.deactivate("http")
