"""Who and what a call is for: `llmtally.attributes(...)`, carried as OpenTelemetry baggage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import baggage, context

from . import semconv

# Baggage key -> telemetry attribute. Baggage crosses services with the W3C `baggage` header.
BAGGAGE_KEYS: dict[str, str] = {
    "llmtally.user": semconv.USER_ID,
    "llmtally.api_key": semconv.API_KEY,
    "llmtally.feature": semconv.FEATURE,
    "llmtally.department": semconv.DEPARTMENT,
    "llmtally.environment": semconv.ENVIRONMENT,
}


@contextmanager
def attributes(
    *,
    user: str | None = None,
    feature: str | None = None,
    department: str | None = None,
    api_key: str | None = None,
    environment: str | None = None,
) -> Iterator[None]:
    """Attribute every LLM call made inside the block.

    `api_key` is an alias for the key in use (say "team-a"), never the key itself. Values nest: an inner block
    overrides only what it names.
    """
    given = {"user": user, "feature": feature, "department": department, "api_key": api_key}
    given["environment"] = environment
    ctx = context.get_current()
    for name, value in given.items():
        if value is not None:
            ctx = baggage.set_baggage(f"llmtally.{name}", str(value), ctx)
    token = context.attach(ctx)
    try:
        yield
    finally:
        context.detach(token)


def current() -> dict[str, str]:
    """The attribution attributes in the current context (empty when none are set)."""
    entries = baggage.get_all()
    if not entries:
        return {}
    return {attr: str(entries[key]) for key, attr in BAGGAGE_KEYS.items() if key in entries}
