"""Who and what a call is for: `llmtally.attributes(...)`, carried as OpenTelemetry baggage."""

from __future__ import annotations

import re
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

# Custom dimensions: `llmtally.dim.<key>`, as baggage and as the attribute. The receiver keeps the keys its
# `dimensions:` declares.
DIMENSION_PREFIX = "llmtally.dim."
DIMENSION_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_DIMENSIONS = 16  # per call (the first ones in the baggage; more are left out)
MAX_DIMENSION_VALUE = 256  # characters (longer values are cut)


@contextmanager
def attributes(
    *,
    user: str | None = None,
    feature: str | None = None,
    department: str | None = None,
    api_key: str | None = None,
    environment: str | None = None,
    **dimensions: str | int | float | None,
) -> Iterator[None]:
    """Attribute every LLM call made inside the block.

    `api_key` is an alias for the key in use (say "team-a"), never the key itself. Other keyword arguments are
    custom dimensions (`team="platform"`): a key is lower-case letters, digits and `_`, starting with a letter, at
    most 32 characters (ValueError otherwise), at most 16 per block; a value is cut to 256 characters. Values nest:
    an inner block overrides only what it names.
    """
    given = {"user": user, "feature": feature, "department": department, "api_key": api_key}
    given["environment"] = environment
    if len(dimensions) > MAX_DIMENSIONS:
        raise ValueError(f"llmtally.attributes takes at most {MAX_DIMENSIONS} custom dimensions, not {len(dimensions)}")
    for key in dimensions:
        if not DIMENSION_KEY.fullmatch(key):
            raise ValueError(
                f"custom dimension {key!r}: a key is lower-case letters, digits and _, starting with a letter, at "
                "most 32 characters"
            )
    ctx = context.get_current()
    for name, value in given.items():
        if value is not None:
            ctx = baggage.set_baggage(f"llmtally.{name}", str(value), ctx)
    for key, dimension in dimensions.items():
        if dimension is not None:
            ctx = baggage.set_baggage(DIMENSION_PREFIX + key, str(dimension)[:MAX_DIMENSION_VALUE], ctx)
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
    found = {attr: str(entries[key]) for key, attr in BAGGAGE_KEYS.items() if key in entries}
    dimensions = [key for key in entries if key.startswith(DIMENSION_PREFIX)][:MAX_DIMENSIONS]
    for key in dimensions:
        found[key] = str(entries[key])[:MAX_DIMENSION_VALUE]
    return found
