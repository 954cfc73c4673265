"""OTLP/HTTP bodies: protobuf or JSON, plain or gzip, into export requests; responses and error statuses back."""

from __future__ import annotations

import base64
import json
import zlib
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
    pass


def parse(kind: str, body: bytes) -> Message:
    """The export request of `kind` ("logs", "traces", "metrics") in a protobuf body; Malformed when it is not one."""
    message = REQUESTS[kind]()
    try:
        message.ParseFromString(body)
    except DecodeError as error:
        raise Malformed(f"not a protobuf {type(message).__name__}: {error}") from error
    return message


def decode(kind: str, body: bytes, content_type: str, encoding: str, max_bytes: int) -> Message | bytes:
    """The export request of `kind` ("logs", "traces", "metrics") that the body holds: a message (JSON), or the
    protobuf bytes as they are (after gzip), which `parse` reads."""
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        body = _gunzip(body, max_bytes)
    elif encoding not in ("", "identity"):
        raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding!r} (use gzip or none)")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == PROTOBUF:
        return body  # parsed where it is normalised (`parse`), in a worker process when there are some
    message = REQUESTS[kind]()
    if media == JSON:
        try:
            data = json.loads(body)
        except ValueError as error:
            raise Malformed(f"not JSON: {error}") from error
        if not isinstance(data, dict):
            raise Malformed("the JSON body must be an object")
        try:
            json_format.ParseDict(_ids_to_base64(data), message, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, TypeError) as error:
            raise Malformed(f"not an OTLP/JSON {type(message).__name__}: {error}") from error
    else:
        raise UnsupportedMediaType(f"unsupported Content-Type {content_type!r} (use {PROTOBUF} or {JSON})")
    return message


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as error:
        raise Malformed(f"bad gzip body: {error}") from error
    if len(out) > max_bytes:
        raise TooLarge(f"the body inflates to more than {max_bytes} bytes")
    return out


def _ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping reads bytes as base64."""
    if isinstance(node, dict):
        out = {}
        for key, item in node.items():
            if key in _ID_KEYS and isinstance(item, str):
                try:
                    out[key] = base64.b64encode(bytes.fromhex(item)).decode()
                except ValueError as error:
                    raise Malformed(f"{key} {item!r} is not hex") from error
            else:
                out[key] = _ids_to_base64(item)
        return out
    if isinstance(node, list):
        return [_ids_to_base64(item) for item in node]
    return node


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
