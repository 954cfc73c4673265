"""Adversarial OTLP for tests: attribute values of every type, size and depth, export requests built from them, and
sending them over OTLP/gRPC, OTLP/HTTP protobuf and OTLP/HTTP JSON to a real receiver."""

from __future__ import annotations

import base64
import json
import math
import random
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.exporter.otlp.proto.common._internal import _encode_key_value
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as logs_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from receiver import Receiver

TRANSPORTS = ("grpc", "http/protobuf", "http/json")
HOUR0_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
UNEXPECTED = "could not be read"  # what a rejection for a bug (not a value) says: never seen when all is well
DEEPEST = 30  # AnyValue levels a request may nest and protobuf still read (100 messages: 31 of key-value lists)

# Every attribute the receiver reads, and a few it does not.
READ = (
    "gen_ai.operation.name",
    "llm.request.type",
    "gen_ai.provider.name",
    "gen_ai.system",
    "gen_ai.request.model",
    "llm.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.usage.prompt_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.usage.total_tokens",
    "llmtally.usage.total_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "llmtally.usage.cache_creation.1h.input_tokens",
    "gen_ai.usage.reasoning.output_tokens",
    "llmtally.usage.audio.input_tokens",
    "llmtally.usage.web_searches",
    "llmtally.usage.unit.images",
    "llmtally.usage.unit.audio_seconds",
    "llmtally.usage.unit.input_characters",
    "llmtally.duration",
    "gen_ai.response.time_to_first_chunk",
    "gen_ai.server.ttft",
    "error.type",
    "llmtally.error.message",
    "http.response.status_code",
    "gen_ai.request.stream",
    "gen_ai.is_streaming",
    "llm.is_streaming",
    "llmtally.stream.outcome",
    "llmtally.usage.source",
    "llmtally.service_tier",
    "openai.request.service_tier",
    "llmtally.speed",
    "user.id",
    "gen_ai.request.user",
    "llmtally.api_key",
    "llmtally.feature",
    "llmtally.department",
    "deployment.environment.name",
    "client.address",
    "gen_ai.response.id",
    "llmtally.provider.request_id",
    "gen_ai.response.finish_reasons",
    "llmtally.events",
    "llmtally.ratelimit.requests.remaining",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "custom.attribute",
    "",
)
STRINGS = (
    "",
    "0",
    "12",
    " 12 ",
    "-3",
    "+4",
    "²",
    "٣",
    "\uff19",  # a fullwidth nine
    "1e3",
    "0x10",
    "12.5",
    "9" * 4301,
    "1" * 25,
    "\x00",
    "a\x00b",
    "true",
    "False",
    "NaN",
    "chat",
    "embeddings",
    "invoke_agent",
    "openai",
    "anthropic",
    "gpt-4o-mini",
    "claude-haiku-4-5",
    "openai.RateLimitError",
    "rate_limit_error",
    "429",
    "é🙂\u202e",
    "x" * 5000,
    "[" * 1000 + "]" * 1000,
    '[{"name": "retry", "n": 1}]',
    '[{"a": NaN}]',
    '[{"a": 1e999}]',
    "[" * 30 + "{}" + "]" * 30,
    '{"not": "a list"}',
)
NUMBERS: tuple[int | float, ...] = (0, 1, -1, 7, 2**63 - 1, -(2**63), 10**12, 10**12 + 1, 999, 100, 1000)
FLOATS = (0.0, -0.0, 0.5, 1.0, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf, 1e12, 3.0)


def value(rng: random.Random, depth: int = 0) -> Any:
    """One attribute value: a number, a flag, text, bytes, or an array or key-value list of such (at most
    `DEEPEST` levels deep, so that protobuf still reads the request)."""
    roll = rng.random()
    if roll < 0.2:
        return rng.choice(NUMBERS) if rng.random() < 0.7 else rng.randrange(-(10**13), 10**13)
    if roll < 0.3:
        return rng.choice(FLOATS) if rng.random() < 0.7 else rng.uniform(-1e6, 1e6)
    if roll < 0.35:
        return rng.random() < 0.5
    if roll < 0.7:
        return rng.choice(STRINGS)
    if roll < 0.75:
        return rng.choice((b"", b"\x00\xff", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))))
    if roll < 0.8 or depth >= DEEPEST - 2:
        return _deep(rng, rng.randrange(1, DEEPEST - depth))
    if roll < 0.9:
        return [value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice((*READ, "a", "b")): value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def _deep(rng: random.Random, levels: int) -> Any:
    node: Any = rng.choice(("x", 1, 2.5, True))
    for _ in range(levels):
        node = [node] if rng.random() < 0.5 else {"k": node}
    return node


def attribute_set(rng: random.Random) -> dict[str, Any]:
    """A GenAI call's attributes, some replaced or added with adversarial values."""
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": rng.choice(("openai", "anthropic", "unknown-co")),
        "gen_ai.request.model": rng.choice(("gpt-4o-mini", "claude-haiku-4-5", "no-such-model")),
        "gen_ai.usage.input_tokens": rng.randrange(0, 5000),
        "gen_ai.usage.output_tokens": rng.randrange(0, 500),
    }
    for _ in range(rng.randrange(1, 6)):
        attrs[rng.choice(READ)] = value(rng)
    return attrs


SCOPES = (
    "llmtally",
    "com.anthropic.sdk.python",
    "openlit.otel.tracing",
    "opentelemetry.instrumentation.genai.openai",
    "opentelemetry.instrumentation.openai.v1",
    "opentelemetry.instrumentation.anthropic",
    "",
    "s" * 5000,
)
RESOURCE = ("service.name", "deployment.environment.name", "deployment.environment", "host.name")


def around(rng: random.Random, request: Message) -> Message:
    """`request` with an adversarial instrumentation scope, resource attributes and span status (sometimes)."""
    if rng.random() < 0.7:
        return request
    if isinstance(request, ExportLogsServiceRequest):
        resource, scope = request.resource_logs[0].resource, request.resource_logs[0].scope_logs[0].scope
        spans: list[Any] = []
    else:
        resource, scope = request.resource_spans[0].resource, request.resource_spans[0].scope_spans[0].scope
        spans = list(request.resource_spans[0].scope_spans[0].spans)
    scope.name = rng.choice(SCOPES)
    resource.attributes.extend(encoded({rng.choice(RESOURCE): value(rng) for _ in range(rng.randrange(1, 3))}))
    items = spans or list(request.resource_logs[0].scope_logs[0].log_records)
    for item in items:
        if rng.random() < 0.05:
            item.span_id = rng.choice((b"", b"\x00" * 8, b"\x07" * 9, b"\x07" * 5000))
    for span in spans:
        if rng.random() < 0.3:
            span.status.code = 2
            span.status.message = rng.choice(STRINGS)
        if rng.random() < 0.1:
            span.kind = rng.randrange(0, 6)
        if rng.random() < 0.1:
            span.start_time_unix_nano, span.end_time_unix_nano = rng.choice(((0, 0), (2**64 - 1, 1), (5, 2**63)))
    return request


def encoded(attrs: dict[str, Any]) -> list[Any]:
    """OTLP KeyValues, as the OpenTelemetry exporters encode them."""
    return [_encode_key_value(key, found) for key, found in attrs.items()]


def traces(items: list[dict[str, Any]], first_id: int, scope: str = "llmtally") -> ExportTraceServiceRequest:
    """One span per attribute set, span ids from `first_id` on."""
    spans = [
        Span(
            trace_id=(first_id + n).to_bytes(16, "big"),
            span_id=(first_id + n).to_bytes(8, "big"),
            name="chat",
            kind=Span.SPAN_KIND_CLIENT,
            start_time_unix_nano=HOUR0_NS + (first_id + n) * 1000,
            end_time_unix_nano=HOUR0_NS + (first_id + n) * 1000 + 10**9,
            attributes=encoded(attrs),
        )
        for n, attrs in enumerate(items)
    ]
    scope_spans = ScopeSpans(spans=spans)
    scope_spans.scope.name = scope
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[scope_spans])])


def logs(items: list[dict[str, Any]], first_id: int) -> ExportLogsServiceRequest:
    """One llmtally audit event per attribute set, span ids from `first_id` on."""
    records = [
        LogRecord(
            time_unix_nano=HOUR0_NS + (first_id + n) * 1000 + 10**9,
            event_name="llmtally.completion",
            trace_id=(first_id + n).to_bytes(16, "big"),
            span_id=(first_id + n).to_bytes(8, "big"),
            attributes=encoded(attrs),
        )
        for n, attrs in enumerate(items)
    ]
    scope_logs = ScopeLogs(log_records=records)
    scope_logs.scope.name = "llmtally"
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[scope_logs])])


def otlp_json(request: Message) -> bytes:
    """OTLP/JSON: protobuf's JSON mapping, with trace and span ids in hex."""
    data = json_format.MessageToDict(request)
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(item, str):
                    node[key] = base64.b64decode(item).hex()
                elif isinstance(item, (dict, list)):
                    stack.append(item)
        elif isinstance(node, list):
            stack.extend(node)
    return json.dumps(data).encode()


@dataclass(frozen=True)
class Answer:
    """What a receiver answered an export: `ok` (200 / OK) and its partial success, or the failure."""

    ok: bool
    rejected: int = 0
    message: str = ""
    failure: str = ""


def send(receiver: Receiver, transport: str, request: Message) -> Answer:
    """Sends an export request over `transport`; never raises for the receiver's answer."""
    is_logs = isinstance(request, ExportLogsServiceRequest)
    if transport == "grpc":
        with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
            stub: Any = (logs_grpc.LogsServiceStub if is_logs else trace_grpc.TraceServiceStub)(channel)
            try:
                reply = stub.Export(request, timeout=60)
            except grpc.RpcError as error:
                return Answer(False, failure=f"{error.code()}: {error.details()}")
    else:
        media = "application/json" if transport == "http/json" else "application/x-protobuf"
        body = otlp_json(request) if transport == "http/json" else request.SerializeToString()
        answer = httpx.post(
            f"{receiver.http_url}/v1/{'logs' if is_logs else 'traces'}",
            content=body,
            headers={"content-type": media},
            timeout=60,
        )
        if answer.status_code != 200:
            return Answer(False, failure=f"{answer.status_code}: {answer.text[:500]}")
        kind = ExportLogsServiceResponse if is_logs else ExportTraceServiceResponse
        reply = (
            json_format.Parse(answer.content, kind(), ignore_unknown_fields=True)
            if transport == "http/json"
            else kind.FromString(answer.content)
        )
    partial = reply.partial_success
    rejected = partial.rejected_log_records if is_logs else partial.rejected_spans
    return Answer(True, rejected, partial.error_message)
