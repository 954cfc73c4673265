"""The tracer, logger and instruments that calls are reported through (meter and scope `llmtally`).

Counters and rate-limit gauges are kept here, per attribute set, and observed by the SDK at collection time
(observable counters and gauges): one dict update per call instead of nine synchronous `add` calls, each of
which would clean and hash its attributes on the app's thread.

Histogram records are deferred the same way: a call queues one entry (its duration, time to first token, usage
and attributes, and the context for exemplars), and the queue is recorded into the synchronous histograms when
the SDK collects, from the first observable callback, i.e. on the metric reader's thread (or whoever collects)
and before the collection reads the histograms. Past `MAX_PENDING` queued calls (a meter provider that never
collects), calls record their histograms at once again.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import Any

from opentelemetry import _logs, metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.util.types import AttributeValue

from . import semconv
from .safety import quiet
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
# Calls whose histogram records may wait for the next collection (the default export interval is 60 s: up to ~68
# calls a second are deferred; each entry holds its attributes and context until then).
MAX_PENDING = 4096


def version() -> str:
    """llmtally's installed version (the instrumentation scope's)."""
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
        # Histogram inputs of queued calls: (telemetry, then the arguments of `Telemetry.record_histograms`).
        self._pending: deque[tuple[Any, ...]] = deque()  # append/popleft are atomic: no lock needed

    def defer(self, entry: tuple[Any, ...]) -> bool:
        """Queues one call's histogram records for the next collection; False when the queue is full."""
        pending = self._pending
        if len(pending) >= MAX_PENDING:
            return False
        pending.append(entry)
        return True

    def flush(self) -> None:
        """Records every queued call's histograms (run at collection time)."""
        pending = self._pending
        while pending:
            try:
                entry = pending.popleft()
            except IndexError:
                return
            with quiet():
                entry[0].record_histograms(*entry[1:])

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

    def rate_limits(self, provider: str, model: str, limits: Mapping[str, tuple[float | None, float | None]]) -> None:
        """The last limit and remaining value of each rate-limit kind, per provider and requested model."""
        with self._lock:
            for kind, (limit, remaining) in limits.items():
                key = ((semconv.PROVIDER, provider), (semconv.REQUEST_MODEL, model), (semconv.RATELIMIT_KIND, kind))
                self._gauges[key] = [limit, remaining]

    def counter_callback(self, slot: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            if slot == 0:  # the first callback of every collection: histograms are read after all callbacks
                self.flush()
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
        version_ = version()
        name = semconv.INSTRUMENTATION_SCOPE
        self.tracer = trace.get_tracer(name, version_, tracer_provider)
        self.logger = _logs.get_logger(name, version_, logger_provider=logger_provider)
        meter = metrics.get_meter(name, version_, meter_provider)
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

    def histograms(
        self,
        seconds: float,
        ttft: float | None,
        usage: Usage | None,
        attrs: dict[str, AttributeValue],
        host: str,
        port: int | None,
        ctx: Context,
    ) -> None:
        """One call's histogram records: queued for the next collection, or recorded now if the queue is full."""
        if not self.totals.defer((self, seconds, ttft, usage, attrs, host, port, ctx)):
            self.record_histograms(seconds, ttft, usage, attrs, host, port, ctx)

    def record_histograms(
        self,
        seconds: float,
        ttft: float | None,
        usage: Usage | None,
        attrs: dict[str, AttributeValue],
        host: str,
        port: int | None,
        ctx: Context,
    ) -> None:
        self.duration.record(seconds, attrs, ctx)
        if ttft is not None:
            self.time_to_first_token.record(ttft, attrs, ctx)
        semconv_attrs = {k: v for k, v in attrs.items() if k not in semconv.METRIC_ONLY_KEYS}
        semconv_attrs[semconv.SERVER_ADDRESS] = host
        if port is not None:
            semconv_attrs[semconv.SERVER_PORT] = port
        self.operation_duration.record(seconds, semconv_attrs, ctx)
        if usage is not None:
            self.token_usage.record(usage.input, {**semconv_attrs, semconv.TOKEN_TYPE: "input"}, ctx)
            self.token_usage.record(usage.output, {**semconv_attrs, semconv.TOKEN_TYPE: "output"}, ctx)
