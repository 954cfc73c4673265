"""Provider rate-limit headers: OpenAI's `x-ratelimit-*` and Anthropic's `anthropic-ratelimit-*`."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.util.types import AttributeValue

from . import semconv

# kind -> (limit header, remaining header, reset header), per header family.
_OPENAI = {
    kind: (f"x-ratelimit-limit-{kind}", f"x-ratelimit-remaining-{kind}", f"x-ratelimit-reset-{kind}")
    for kind in ("requests", "tokens")
}
_ANTHROPIC = {
    kind.replace("-", "_"): (
        f"anthropic-ratelimit-{kind}-limit",
        f"anthropic-ratelimit-{kind}-remaining",
        f"anthropic-ratelimit-{kind}-reset",
    )
    for kind in ("requests", "tokens", "input-tokens", "output-tokens")
}


class RateLimits(dict[str, tuple[float | None, float | None]]):
    """kind (requests, tokens, input_tokens, output_tokens) -> (limit, remaining)."""

    resets: dict[str, str]

    def __init__(self) -> None:
        super().__init__()
        self.resets = {}

    def span_attributes(self) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = {}
        for kind, (limit, remaining) in self.items():
            limit_name, remaining_name, _ = _names(kind)
            if limit is not None:
                attrs[limit_name] = limit
            if remaining is not None:
                attrs[remaining_name] = remaining
        for kind, reset in self.resets.items():
            attrs[_names(kind)[2]] = reset
        return attrs


_NAMES: dict[str, tuple[str, str, str]] = {}


def _names(kind: str) -> tuple[str, str, str]:
    """The span attribute names of a rate-limit kind: `.limit`, `.remaining`, `.reset` (built once per kind)."""
    found = _NAMES.get(kind)
    if found is None:
        prefix = semconv.RATELIMIT_PREFIX + kind
        found = _NAMES[kind] = (prefix + ".limit", prefix + ".remaining", prefix + ".reset")
    return found


def read(headers: Mapping[str, str]) -> RateLimits | None:
    """The rate limits an answer's headers report, or None when it reports none."""
    if "x-ratelimit-limit-requests" in headers or "x-ratelimit-limit-tokens" in headers:
        family = _OPENAI
    elif "anthropic-ratelimit-requests-limit" in headers or "anthropic-ratelimit-tokens-limit" in headers:
        family = _ANTHROPIC
    else:
        return None
    limits = RateLimits()
    for kind, (limit_h, remaining_h, reset_h) in family.items():
        limit, remaining = _number(headers.get(limit_h)), _number(headers.get(remaining_h))
        if limit is not None or remaining is not None:
            limits[kind] = (limit, remaining)
        reset = headers.get(reset_h)
        if reset:
            limits.resets[kind] = reset
    return limits or None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
