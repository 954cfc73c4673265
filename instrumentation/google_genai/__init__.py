"""`llmtally_google_genai`: the google-genai SDK hook.

models.generate_content / generate_content_stream / embed_content and chats, sync and async, go through the SDK's
API client, whose request methods `hook` wraps; the answers are read at the SDK level, so the async client's
transport (aiohttp when it is installed, else httpx) does not matter. Calls go to `gcp.gemini`, or `gcp.vertex_ai`
when the client is in Vertex AI mode.
"""

from __future__ import annotations

from ..instrumentor import LLMInstrumentor


class GoogleGenAIInstrumentor(LLMInstrumentor):
    """Records every google-genai model call as one span, one audit event and the completion metrics."""

    name = "google_genai"
    requires = ("google-genai >= 1",)

    def wrap(self) -> None:
        from . import hook  # imports google-genai: only once it is installed and hooked

        hook.wrap()

    def unwrap(self) -> None:
        from . import hook

        hook.unwrap()
