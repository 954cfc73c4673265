"""`llmtally_http`: LLM API calls made with `httpx2` or `httpx` directly.

OpenAI-compatible and known provider APIs (OpenRouter, Groq, Together, Mistral, DeepSeek, xAI, Fireworks, vLLM,
Ollama's `/api/chat` and `/api/generate`, Azure OpenAI deployments, Cohere v2, Gemini, Bedrock, Claude on Vertex AI),
JSON and streamed answers. A call an SDK hook already records is not recorded again. The Cohere SDK, which sends
with httpx, gets its retries joined into one call (`cohere`).
"""

from __future__ import annotations

from ..instrumentor import LLMInstrumentor
from . import cohere


class HTTPInstrumentor(LLMInstrumentor):
    """Records LLM API calls seen by `httpx2` / `httpx` clients that no SDK hook opened."""

    name = "http"

    def wrap(self) -> None:
        cohere.wrap()

    def unwrap(self) -> None:
        cohere.unwrap()
