"""The tracer, logger and instruments that calls are reported through (meter and scope `llmtally`).

Counters and rate-limit gauges are kept here, per attribute set, and observed by the SDK at collection time
(observable counters and gauges): one dict update per call instead of nine synchronous `add` calls, each of
which would clean and hash its attributes on the app's thread. Histograms stay synchronous.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import Any

from opentelemetry import _logs, metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.util.types import AttributeValue

from . import semconv
from .usage import Usage

# name, unit, description; the index of each is its slot in `Totals`.
COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("completion.requests.total", "{request}", "LLM requests"),
    ("completion.requests.success", "{request}", "Successful LLM requests"),
    ("completion.requests.error", "{request}", "Failed LLM requests"),
    ("completion.tokens.prompt", "{token}", "Input tokens, cache reads and writes included"),
    ("completion.tokens.completion", "{token}", "Output tokens, reasoning included"),
    ("completion.tokens.total", "{token}", "Input plus output tokens"),
    ("completion.tokens.cached", "{token}", "Input tokens read from cache"),
    ("completion.tokens.cache_write", "{token}", "Input tokens written to cache"),
    ("completion.tokens.reasoning", "{token}", "Reasoning output tokens"),
)
_TOKENS = 3  # slots from here on are token counters, reported for attribute sets that had usage
_HAS_USAGE = len(COUNTERS)

Key = tuple[tuple[str, AttributeValue], ...]


def _version() -> str:
    try:
        return metadata.version("llmtally")
    except metadata.PackageNotFoundError:
        return "0"


class Totals:
    """Cumulative counter values and the last rate-limit values, per attribute set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Key, list[int]] = {}
        self._gauges: dict[Key, list[float | None]] = {}

    def count(self, attrs: Mapping[str, AttributeValue], failed: bool, usage: Usage | None) -> None:
        key = tuple(attrs.items())
        with self._lock:
            slots = self._counts.get(key)
            if slots is None:
                slots = self._counts[key] = [0] * (len(COUNTERS) + 1)
            slots[0] += 1
            slots[2 if failed else 1] += 1
            if usage is not None:
                slots[3] += usage.input
                slots[4] += usage.output
                slots[5] += usage.total
                slots[6] += usage.cache_read
                slots[7] += usage.cache_write
                slots[8] += usage.reasoning
                slots[_HAS_USAGE] = 1

    def rate_limit(self, attrs: Mapping[str, AttributeValue], limit: float | None, remaining: float | None) -> None:
        with self._lock:
            self._gauges[tuple(attrs.items())] = [limit, remaining]

    def counter_callback(self, slot: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                found = [(key, slots[slot]) for key, slots in self._counts.items() if _reported(slots, slot)]
            return [Observation(value, dict(key)) for key, value in found]

        return observe

    def gauge_callback(self, index: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                found = [(key, values[index]) for key, values in self._gauges.items() if values[index] is not None]
            return [Observation(value, dict(key)) for key, value in found if value is not None]

        return observe


def _reported(slots: list[int], slot: int) -> bool:
    if slot >= _TOKENS:
        return slots[_HAS_USAGE] == 1
    return slot == 0 or slots[slot] > 0


# One `Totals` per meter provider: the SDK keeps the callbacks of the first registration of an observable
# instrument, so instrumenting again with the same provider must keep counting into the same totals.
_totals: weakref.WeakKeyDictionary[Any, Totals] = weakref.WeakKeyDictionary()
_totals_lock = threading.Lock()


def _totals_for(meter_provider: Any, meter: Any) -> Totals:
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _totals_lock:
        totals = _totals.get(provider)
        if totals is None:
            totals = _totals[provider] = Totals()
            for slot, (name, unit, description) in enumerate(COUNTERS):
                meter.create_observable_counter(name, [totals.counter_callback(slot)], unit, description)
            meter.create_observable_gauge(
                "completion.ratelimit.limit", [totals.gauge_callback(0)], "1", "Provider rate limit, by kind"
            )
            meter.create_observable_gauge(
                "completion.ratelimit.remaining", [totals.gauge_callback(1)], "1", "Provider rate limit left, by kind"
            )
        return totals


class Telemetry:
    """One set of OpenTelemetry handles, bound to the given (or the global) providers."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None, logger_provider: Any = None) -> None:
        version = _version()
        name = semconv.INSTRUMENTATION_SCOPE
        self.tracer = trace.get_tracer(name, version, tracer_provider)
        self.logger = _logs.get_logger(name, version, logger_provider=logger_provider)
        meter = metrics.get_meter(name, version, meter_provider)
        self.totals = _totals_for(meter_provider, meter)
        histogram = meter.create_histogram
        self.duration = histogram(
            "completion.duration",
            "s",
            "LLM request duration",
            explicit_bucket_boundaries_advisory=semconv.DURATION_BUCKETS,
        )
        self.time_to_first_token = histogram(
            "completion.time_to_first_token",
            "s",
            "Time to the first streamed chunk",
            explicit_bucket_boundaries_advisory=semconv.TTFT_BUCKETS,
        )
        self.operation_duration = histogram(
            "gen_ai.client.operation.duration",
            "s",
            "GenAI operation duration",
            explicit_bucket_boundaries_advisory=semconv.DURATION_BUCKETS,
        )
        self.token_usage = histogram(
            "gen_ai.client.token.usage",
            "{token}",
            "Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=semconv.TOKEN_BUCKETS,
        )
