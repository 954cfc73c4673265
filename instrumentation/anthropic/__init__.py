"""`llmtally_anthropic`: the Anthropic SDK (anthropic >= 2) hook, its Bedrock and Vertex AI clients included.

The SDK traces its own calls by default (scope `com.anthropic.sdk.python`). llmtally takes those over: for a
call that llmtally records, the SDK's call span is not started (the SDK then runs the call exactly as it does
with `ANTHROPIC_OPEN_TELEMETRY=false`), and llmtally's span carries the GenAI attributes instead. So one call
is one span and one record, with the SDK's tracing on or off. The SDK's other spans (tool runs) are untouched.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from .. import sdk
from ..call import current_call
from ..instrumentor import LLMInstrumentor


def _skip_native_span(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if current_call.get() is not None:
        return None
    return wrapped(*args, **kwargs)


class AnthropicInstrumentor(LLMInstrumentor):
    """Records every Anthropic SDK messages call (create/stream/parse, beta too) once."""

    name = "anthropic"
    requires = ("anthropic >= 2",)

    def wrap(self) -> None:
        sdk.wrap_clients("anthropic._base_client", "anthropic")
        wrap_function_wrapper("anthropic._base_client", "start_api_call_span", _skip_native_span)

    def unwrap(self) -> None:
        import anthropic._base_client

        sdk.unwrap_clients(anthropic._base_client)
        unwrap(anthropic._base_client, "start_api_call_span")
