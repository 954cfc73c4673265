"""`llmtally_openai`: the OpenAI SDK (openai >= 3) hook.

Every surface goes through the SDK client's `request`: chat.completions create/parse/stream, responses
create/stream/parse, embeddings, legacy completions, `with_raw_response` and `with_streaming_response`,
sync and async.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from .. import runtime, sdk


class OpenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Records every OpenAI SDK call as one span, one audit event and the completion metrics."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai >= 3",)

    def _instrument(self, **kwargs: Any) -> None:
        runtime.activate("openai", **kwargs)
        sdk.wrap_clients("openai._base_client", "openai")

    def _uninstrument(self, **kwargs: Any) -> None:
        import openai._base_client

        sdk.unwrap_clients(openai._base_client)
        runtime.deactivate("openai")
