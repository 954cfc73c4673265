"""The tracer, logger and instruments that calls are reported through (meter and scope `llmtally`)."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from opentelemetry import _logs, metrics, trace

from . import semconv


def _version() -> str:
    try:
        return metadata.version("llmtally")
    except metadata.PackageNotFoundError:
        return "0"


class Telemetry:
    """One set of OpenTelemetry handles, bound to the given (or the global) providers."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None, logger_provider: Any = None) -> None:
        version = _version()
        name = semconv.INSTRUMENTATION_SCOPE
        self.tracer = trace.get_tracer(name, version, tracer_provider)
        self.logger = _logs.get_logger(name, version, logger_provider=logger_provider)
        meter = metrics.get_meter(name, version, meter_provider)
        counter = meter.create_counter
        self.requests_total = counter("completion.requests.total", "{request}", "LLM requests")
        self.requests_success = counter("completion.requests.success", "{request}", "Successful LLM requests")
        self.requests_error = counter("completion.requests.error", "{request}", "Failed LLM requests")
        self.tokens_prompt = counter("completion.tokens.prompt", "{token}", "Input tokens, cache included")
        self.tokens_completion = counter("completion.tokens.completion", "{token}", "Output tokens, reasoning included")
        self.tokens_total = counter("completion.tokens.total", "{token}", "Input plus output tokens")
        self.tokens_cached = counter("completion.tokens.cached", "{token}", "Input tokens read from cache")
        self.tokens_cache_write = counter("completion.tokens.cache_write", "{token}", "Input tokens written to cache")
        self.tokens_reasoning = counter("completion.tokens.reasoning", "{token}", "Reasoning output tokens")
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
        self.ratelimit_remaining = meter.create_gauge(
            "completion.ratelimit.remaining", "1", "Provider rate limit remaining, by kind"
        )
        self.ratelimit_limit = meter.create_gauge("completion.ratelimit.limit", "1", "Provider rate limit, by kind")
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
