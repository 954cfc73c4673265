"""`llmtally_openai`: the OpenAI SDK (openai >= 3) hook.

Every surface goes through the SDK client's `request`: chat.completions create/parse/stream, responses
create/stream/parse, embeddings, legacy completions, images, audio, `with_raw_response` and
`with_streaming_response`, sync and async.
"""

from __future__ import annotations

from .. import sdk
from ..instrumentor import LLMInstrumentor


class OpenAIInstrumentor(LLMInstrumentor):
    """Records every OpenAI SDK call as one span, one audit event and the completion metrics."""

    name = "openai"
    requires = ("openai >= 3",)

    def wrap(self) -> None:
        sdk.wrap_clients("openai._base_client", "openai")

    def unwrap(self) -> None:
        import openai._base_client

        sdk.unwrap_clients(openai._base_client)
