"""The `completion_*` Prometheus families, derived from stored records.

A collector: each stored record updates per-label-set sums here (one dict update, not one client call per
family), and a scrape turns them into metric families. Users and API keys are never labels; past `max_series`
label sets, new ones are folded into `_other` so that a flood of distinct values cannot grow the series count.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ..normalise import Record
from .histogram import Histogram

LABELS = ("provider", "operation", "model", "response_model", "feature", "department", "environment")
SEMCONV_LABELS = ("provider", "operation", "model", "response_model")
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
OTHER = "_other"
DIMENSION_OTHER = "other"  # a dimension label's value past its max_values

# Counter families over LABELS: (name without _total, help, slot in the per-series sums).
COUNTERS = (
    ("completion_requests", "LLM requests"),
    ("completion_requests_success", "Successful LLM requests"),
    ("completion_tokens_prompt", "Input tokens, cache reads and writes included"),
    ("completion_tokens_completion", "Output tokens, reasoning included"),
    ("completion_tokens", "Input plus output tokens"),
    ("completion_tokens_cached", "Input tokens read from cache"),
    ("completion_tokens_cache_write", "Input tokens written to cache"),
    ("completion_tokens_reasoning", "Reasoning output tokens"),
    ("completion_unpriced_requests", "Requests whose model has no known price"),
)
_NANO = 1e-9


class _Series:
    __slots__ = ("customer_nusd", "duration", "provider_nusd", "sums", "ttft")

    def __init__(self) -> None:
        self.sums: list[int] = [0] * len(COUNTERS)
        self.customer_nusd = 0
        self.provider_nusd = 0
        self.duration = Histogram(DURATION_BUCKETS)
        self.ttft = Histogram(TTFT_BUCKETS)


class RecordMetrics(Collector):
    """Prometheus families that stored records add up to."""

    def __init__(
        self,
        max_series: int = 10_000,
        dimension_labels: Sequence[tuple[str, int]] = (),
        overflow: Callable[[str], None] | None = None,
    ) -> None:
        """`dimension_labels`: custom dimensions that are labels too, each with its cap on distinct values (later
        values are `other`; `overflow(key)` is called for each record so counted)."""
        self.max_series = max_series
        self.dimension_labels = tuple(dimension_labels)
        self.labels = (*LABELS, *(key for key, _ in self.dimension_labels))
        self._overflow = overflow
        self._dimension_values: dict[str, set[str]] = {key: set() for key, _ in self.dimension_labels}
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], _Series] = {}
        self._errors: dict[tuple[str, ...], int] = {}
        self._op_duration: dict[tuple[str, ...], Histogram] = {}
        self._token_usage: dict[tuple[str, ...], Histogram] = {}
        self._ratelimits: dict[tuple[str, str, str], list[float | None]] = {}

    def observe(self, records: Iterable[Record]) -> None:
        """Adds newly stored records."""
        with self._lock:
            for record in records:
                self._add(record)

    def replace(self, pairs: Iterable[tuple[Record, Record]]) -> None:
        """Stored records that richer records of their calls replaced (here or at another replica): see
        `_difference`."""
        with self._lock:
            for old, new in pairs:
                self._difference(old, new)

    def _difference(self, old: Record, new: Record) -> None:
        """The counters move from `old`'s values to `new`'s when that is an increase of each (same labels, same
        outcome, no count or cost lower): the call then counts as its kept record. Otherwise they keep `old`'s
        (counters never go down). Either way the call counts once; histograms keep `old`'s observations."""
        key = self._key(old, counted=False)
        if key != self._key(new, counted=False) or (old.status, old.error_type) != (new.status, new.error_type):
            return
        before, after = _counted(old), _counted(new)
        deltas = [b - a for a, b in zip(before, after, strict=True)]
        if any(d < 0 for d in deltas):
            return
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        for slot, delta in enumerate(deltas[: len(COUNTERS)]):
            series.sums[slot] += delta
        series.provider_nusd += deltas[-2]
        series.customer_nusd += deltas[-1]

    def _key(self, record: Record, counted: bool = True) -> tuple[str, ...]:
        key: tuple[str, ...] = (
            record.provider,
            record.operation,
            record.request_model,
            record.response_model,
            record.feature or "",
            record.department or "",
            record.environment or "",
        )
        if self.dimension_labels:
            key += self._dimension_key(record, counted)
        if key not in self._series and len(self._series) >= self.max_series:
            key = (record.provider, record.operation, *[OTHER] * (len(self.labels) - 2))
        return key

    def _dimension_key(self, record: Record, counted: bool) -> tuple[str, ...]:
        """The record's values of the dimension labels, each past its cap of distinct values `other`."""
        values = []
        for name, most in self.dimension_labels:
            value = record.dimensions.get(name, "")
            seen = self._dimension_values[name]
            if value and value not in seen:
                if len(seen) < most:
                    seen.add(value)
                else:
                    value = DIMENSION_OTHER
                    if counted and self._overflow is not None:
                        self._overflow(name)
            values.append(value)
        return tuple(values)

    def _add(self, record: Record) -> None:
        key = self._key(record)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        sums = series.sums
        sums[0] += 1
        failed = record.status != "success"
        if not failed:
            sums[1] += 1
        else:
            error_key = (*key, record.error_type or "_OTHER")
            self._errors[error_key] = self._errors.get(error_key, 0) + 1
        sums[2] += record.input_tokens
        sums[3] += record.output_tokens
        sums[4] += record.total_tokens
        sums[5] += record.cached_tokens
        sums[6] += record.cache_write_tokens
        sums[7] += record.reasoning_tokens
        if not record.priced:
            sums[8] += 1
        series.provider_nusd += record.provider_cost_nusd or 0
        series.customer_nusd += record.customer_cost_nusd or 0
        series.duration.observe(record.duration_s)
        if record.ttft_s is not None:
            series.ttft.observe(record.ttft_s)
        semconv_key = (*key[:4], record.error_type or "") if len(self._op_duration) < self.max_series else key[:2]
        histogram = self._op_duration.get(semconv_key)
        if histogram is None:
            histogram = self._op_duration[semconv_key] = Histogram(DURATION_BUCKETS)
        histogram.observe(record.duration_s)
        if record.usage_source != "none":
            for token_type, value in (("input", record.input_tokens), ("output", record.output_tokens)):
                token_key = (*key[:4], token_type)
                tokens = self._token_usage.get(token_key)
                if tokens is None:
                    tokens = self._token_usage[token_key] = Histogram(TOKEN_BUCKETS)
                tokens.observe(value)
        for name, level in record.ratelimits.items():
            kind, _, which = name.rpartition(".")
            if which in ("limit", "remaining") and len(self._ratelimits) < self.max_series:
                slot = self._ratelimits.setdefault((record.provider, record.request_model, kind), [None, None])
                slot[0 if which == "limit" else 1] = level

    def series_count(self) -> int:
        with self._lock:
            return len(self._series)

    def collect(self) -> Iterator[Any]:
        with self._lock:
            series = list(self._series.items())
            errors = list(self._errors.items())
            op_duration = list(self._op_duration.items())
            token_usage = list(self._token_usage.items())
            ratelimits = list(self._ratelimits.items())
        labels = self.labels
        for slot, (name, help_text) in enumerate(COUNTERS):
            family = CounterMetricFamily(name, help_text, labels=labels)
            for key, s in series:
                family.add_metric(key, s.sums[slot])
            yield family
        family = CounterMetricFamily("completion_requests_error", "Failed LLM requests", labels=(*labels, "error_type"))
        for error_key, count in errors:
            family.add_metric(error_key, count)
        yield family
        customer = CounterMetricFamily(
            "completion_cost_usd", "Customer cost: provider cost x (1 + markup) + fee", labels=labels
        )
        provider = CounterMetricFamily("completion_provider_cost_usd", "Provider cost in USD", labels=labels)
        for key, s in series:
            customer.add_metric(key, s.customer_nusd * _NANO)
            provider.add_metric(key, s.provider_nusd * _NANO)
        yield customer
        yield provider
        yield _histograms(
            "completion_duration_seconds", "LLM request duration", labels, [(k, s.duration) for k, s in series]
        )
        yield _histograms(
            "completion_time_to_first_token_seconds",
            "Time to the first streamed chunk",
            labels,
            [(k, s.ttft) for k, s in series if s.ttft.count],
        )
        yield _histograms(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration",
            (*SEMCONV_LABELS, "error_type"),
            op_duration,
        )
        yield _histograms(
            "gen_ai_client_token_usage", "Input and output tokens used", (*SEMCONV_LABELS, "token_type"), token_usage
        )
        limit = GaugeMetricFamily(
            "completion_ratelimit_limit", "Provider rate limit", labels=("provider", "model", "kind")
        )
        left = GaugeMetricFamily(
            "completion_ratelimit_remaining", "Provider rate limit left", labels=("provider", "model", "kind")
        )
        for rl_key, (limit_value, remaining) in ratelimits:
            if limit_value is not None:
                limit.add_metric(rl_key, limit_value)
            if remaining is not None:
                left.add_metric(rl_key, remaining)
        yield limit
        yield left


def _counted(r: Record) -> list[int]:
    """What a record adds to its series' counters, in `COUNTERS` order, then provider and customer cost."""
    return [
        1,
        int(r.status == "success"),
        r.input_tokens,
        r.output_tokens,
        r.total_tokens,
        r.cached_tokens,
        r.cache_write_tokens,
        r.reasoning_tokens,
        int(not r.priced),
        r.provider_cost_nusd or 0,
        r.customer_cost_nusd or 0,
    ]


def _histograms(
    name: str, help_text: str, labels: Sequence[str], items: Sequence[tuple[tuple[str, ...], Histogram]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, help_text, labels=labels)
    for key, histogram in items:
        family.add_metric(list(key), histogram.buckets(), histogram.total)
    return family
