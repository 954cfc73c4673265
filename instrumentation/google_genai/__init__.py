"""`llmtally_google_genai`: the google-genai SDK hook (being written)."""

from __future__ import annotations

from ..instrumentor import LLMInstrumentor


class GoogleGenAIInstrumentor(LLMInstrumentor):
    """Records every google-genai model call."""

    name = "google_genai"
    requires = ("google-genai >= 1",)
