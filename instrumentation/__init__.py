"""llmtally's in-app instrumentation: OpenAI, Anthropic, google-genai and botocore (Bedrock) hooks and an
httpx/httpx2 hook.

Light on purpose: it imports OpenTelemetry's API/SDK handles and wrapt, never the receiver's dependencies.
Loaded by `opentelemetry-instrument` through the entry points `llmtally_openai`, `llmtally_anthropic`,
`llmtally_google_genai`, `llmtally_botocore` and `llmtally_http`, or in code with `llmtally.instrument()`.
"""

from __future__ import annotations

from typing import Any

from .attribution import attributes
from .budgets import BudgetError, BudgetExceeded, BudgetStateUnavailable

__all__ = ["BudgetError", "BudgetExceeded", "BudgetStateUnavailable", "attributes", "instrument", "uninstrument"]

HOOKS = ("openai", "anthropic", "google_genai", "botocore", "http")


def _instrumentors(hooks: tuple[str, ...]) -> list[Any]:
    found: list[Any] = []
    if "openai" in hooks:
        from .openai import OpenAIInstrumentor

        found.append(OpenAIInstrumentor())
    if "anthropic" in hooks:
        from .anthropic import AnthropicInstrumentor

        found.append(AnthropicInstrumentor())
    if "google_genai" in hooks:
        from .google_genai import GoogleGenAIInstrumentor

        found.append(GoogleGenAIInstrumentor())
    if "botocore" in hooks:
        from .botocore import BotocoreInstrumentor

        found.append(BotocoreInstrumentor())
    if "http" in hooks:
        from .http import HTTPInstrumentor

        found.append(HTTPInstrumentor())
    return found


def instrument(
    *,
    hooks: tuple[str, ...] = HOOKS,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger_provider: Any = None,
    capture_content: bool | None = None,
    capture_max_bytes: int | None = None,
    redact_patterns: list[str] | None = None,
    stream_usage: bool | None = None,
    provider_hosts: dict[str, str] | None = None,
    environment: str | None = None,
    budgets_url: str | None = None,
    api_token: str | None = None,
    budgets_refresh_seconds: float | None = None,
    budgets_fail: str | None = None,
) -> None:
    """Turns on the hooks (all by default) for the libraries that are installed.

    Providers default to the global ones; the other arguments override the environment variables documented in
    the README (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`, `LLMTALLY_*`). With `budgets_url` (the
    receiver's HTTP base URL), calls over a hard budget raise `BudgetExceeded` before anything is sent.
    """
    kwargs = {
        "tracer_provider": tracer_provider,
        "meter_provider": meter_provider,
        "logger_provider": logger_provider,
        "capture_content": capture_content,
        "capture_max_bytes": capture_max_bytes,
        "redact_patterns": redact_patterns,
        "stream_usage": stream_usage,
        "provider_hosts": provider_hosts,
        "environment": environment,
        "budgets_url": budgets_url,
        "api_token": api_token,
        "budgets_refresh_seconds": budgets_refresh_seconds,
        "budgets_fail": budgets_fail,
    }
    for instrumentor in _instrumentors(hooks):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(**{k: v for k, v in kwargs.items() if v is not None})


def uninstrument() -> None:
    """Turns every hook off and restores the wrapped methods."""
    for instrumentor in _instrumentors(HOOKS):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
