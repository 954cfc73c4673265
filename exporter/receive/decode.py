"""OTLP bodies, protobuf or JSON, into export requests; responses and error statuses back (gzip is inflated as the
body is read: `limits.read_body`)."""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb2

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
REQUESTS: dict[str, type[Message]] = {
    "logs": logs_pb2.ExportLogsServiceRequest,
    "traces": trace_pb2.ExportTraceServiceRequest,
    "metrics": metrics_pb2.ExportMetricsServiceRequest,
}
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


class Malformed(ValueError):
    """The body cannot be an export request: answered 400 / INVALID_ARGUMENT, not retried."""


class UnsupportedMediaType(Malformed):
    pass


class TooLarge(Malformed):
    """Larger than `receiver.max_request_bytes`, as sent or inflated: answered 413."""


def media_type(content_type: str) -> str:
    """PROTOBUF or JSON, from a Content-Type header; UnsupportedMediaType for any other."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        raise UnsupportedMediaType(f"unsupported Content-Type {content_type!r} (use {PROTOBUF} or {JSON})")
    return media


def parse(kind: str, body: bytes, media: str = PROTOBUF) -> Message:
    """The export request of `kind` ("logs", "traces", "metrics") in a protobuf or OTLP/JSON body; Malformed when it
    is not one (nested deeper than protobuf reads, 100 messages, included)."""
    message = REQUESTS[kind]()
    name = type(message).__name__
    if media == PROTOBUF:
        try:
            message.ParseFromString(body)
        except DecodeError as error:
            raise Malformed(f"not a protobuf {name}: {error}") from error
        return message
    try:
        data = json.loads(body)
    except RecursionError as error:
        raise Malformed("not JSON: nested too deeply") from error
    except ValueError as error:
        raise Malformed(f"not JSON: {error}") from error
    if not isinstance(data, dict):
        raise Malformed("the JSON body must be an object")
    _ids_to_base64(data)
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except RecursionError as error:
        raise Malformed(f"not an OTLP/JSON {name}: nested too deeply") from error
    except (json_format.ParseError, ValueError, TypeError) as error:
        raise Malformed(f"not an OTLP/JSON {name}: {error}") from error
    return message


def _ids_to_base64(data: dict[str, Any]) -> None:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping reads bytes as base64. Rewrites them in
    place, walking the tree without recursion (any depth json.loads returns)."""
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                if key in _ID_KEYS and isinstance(item, str):
                    try:
                        node[key] = base64.b64encode(bytes.fromhex(item)).decode()
                    except ValueError as error:
                        raise Malformed(f"{key} {item!r} is not hex") from error
                elif isinstance(item, (dict, list)):
                    stack.append(item)
        elif isinstance(node, list):
            stack.extend(item for item in node if isinstance(item, (dict, list)))


def response(kind: str, rejected: int, message: str, media: str) -> bytes:
    """The export response, with partial success when anything was rejected."""
    if kind == "logs":
        reply: Message = logs_pb2.ExportLogsServiceResponse()
        if rejected:
            reply.partial_success.rejected_log_records = rejected
    elif kind == "traces":
        reply = trace_pb2.ExportTraceServiceResponse()
        if rejected:
            reply.partial_success.rejected_spans = rejected
    else:
        reply = metrics_pb2.ExportMetricsServiceResponse()
        if rejected:
            reply.partial_success.rejected_data_points = rejected
    if rejected:
        reply.partial_success.error_message = message  # type: ignore[attr-defined]
    return _encode(reply, media)


def status(code: int, message: str, media: str) -> bytes:
    """A google.rpc.Status body for an error answer (the OTLP/HTTP spec's error body)."""
    return _encode(status_pb2.Status(code=code, message=message), media)


def _encode(message: Message, media: str) -> bytes:
    if media == JSON:
        return str(json_format.MessageToJson(message, indent=None)).encode()
    return bytes(message.SerializeToString())
