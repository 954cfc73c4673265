"""`llmtally_anthropic`: the Anthropic SDK (anthropic >= 2) hook.

The SDK traces its own calls by default (scope `com.anthropic.sdk.python`). llmtally takes those over: for a
call that llmtally records, the SDK's call span is not started (the SDK then runs the call exactly as it does
with `ANTHROPIC_OPEN_TELEMETRY=false`), and llmtally's span carries the GenAI attributes instead. So one call
is one span and one record, with the SDK's tracing on or off. The SDK's other spans (tool runs) are untouched.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from .. import runtime, sdk
from ..scope import current_call


def _skip_native_span(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if current_call.get() is not None:
        return None
    return wrapped(*args, **kwargs)


class AnthropicInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Records every Anthropic SDK messages call (create/stream/parse, beta too) once."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("anthropic >= 2",)

    def _instrument(self, **kwargs: Any) -> None:
        runtime.activate("anthropic", **kwargs)
        sdk.wrap_clients("anthropic._base_client", "anthropic")
        wrap_function_wrapper("anthropic._base_client", "start_api_call_span", _skip_native_span)

    def _uninstrument(self, **kwargs: Any) -> None:
        import anthropic._base_client

        sdk.unwrap_clients(anthropic._base_client)
        unwrap(anthropic._base_client, "start_api_call_span")
        runtime.deactivate("anthropic")
