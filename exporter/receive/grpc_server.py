"""OTLP/gRPC: the logs, trace and metrics export services.

The services take the request's protobuf bytes as they arrive (no deserializer): they are parsed where they are
normalised, in a worker process when the receiver has workers, so the receiving threads only move bytes.

At most `max_concurrent` export calls are taken at once. Export is served as a client-streaming method (the same
bytes on the wire as unary), so its handler runs before the request message is read: a call past the bound is
refused at once with RESOURCE_EXHAUSTED and a RetryInfo detail, its message never read, and counted. Not grpc's own
`maximum_concurrent_rpcs`: it refuses without RetryInfo, which the Collector's OTLP exporter takes as permanent (it
drops the data), and uncounted. Nor a grpc.aio server: a unary handler there too runs only once the message is in,
and ingest blocks (on a worker, on the store) as the threads of this server may.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb2

from ..pipeline import Overloaded
from .credentials import Sender, Senders, Unauthenticated
from .decode import Malformed
from .ingest import Ingest, Outcome, Unavailable
from .limits import Slots

# Threads beyond the slots: they refuse the calls past the slots at once, while every slot's thread waits on the store.
SPARE_THREADS = 4
# kind -> (the gRPC service, its response type)
SERVICES: dict[str, tuple[str, type[Message]]] = {
    "logs": ("opentelemetry.proto.collector.logs.v1.LogsService", logs_pb2.ExportLogsServiceResponse),
    "traces": ("opentelemetry.proto.collector.trace.v1.TraceService", trace_pb2.ExportTraceServiceResponse),
    "metrics": ("opentelemetry.proto.collector.metrics.v1.MetricsService", metrics_pb2.ExportMetricsServiceResponse),
}


def _peer(context: grpc.ServicerContext) -> str | None:
    peer = context.peer() or ""  # "ipv4:127.0.0.1:5000" / "ipv6:[::1]:5000"
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return None


def _refuse(context: grpc.ServicerContext, code: grpc.StatusCode, rpc_code: int, message: str, retry_s: float) -> None:
    """Ends the call with `code` and a RetryInfo detail, so OTLP exporters retry after `retry_s`."""
    detail = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=int(retry_s)))
    status = status_pb2.Status(code=rpc_code, message=message)
    status.details.add().Pack(detail)
    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(code, message)


def _reply(kind: str, outcome: Outcome) -> bytes:
    reply = SERVICES[kind][1]()
    if outcome.rejected:
        partial = reply.partial_success  # type: ignore[attr-defined]
        if kind == "logs":
            partial.rejected_log_records = outcome.rejected
        elif kind == "traces":
            partial.rejected_spans = outcome.rejected
        partial.error_message = outcome.message
    return bytes(reply.SerializeToString())


def _authorization(context: grpc.ServicerContext) -> str | None:
    return next((str(v) for k, v in context.invocation_metadata() or () if k == "authorization"), None)


def _export(
    ingest: Ingest, kind: str, retry_after: float, senders: Senders, slots: Slots
) -> Callable[[Iterator[bytes], grpc.ServicerContext], bytes]:
    """The Export method, taken as a client-streaming one (the same on the wire as unary): it runs before the request
    message is read, so a call past the slots is refused (with RetryInfo) without reading it."""
    refused = ingest.metrics.receiver.refused

    def export(messages: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        try:
            sender = senders.sender(_authorization(context))
        except Unauthenticated as error:
            refused.labels("unauthenticated").inc()
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(error))
        if not slots.take():
            refused.labels("busy").inc()
            text = f"{slots.size} OTLP/gRPC calls are in flight (receiver.max_concurrent_grpc_requests)"
            _refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED, text, retry_after)
        try:
            return _take(ingest, kind, retry_after, sender, messages, context)
        finally:
            slots.give()

    return export


def _take(
    ingest: Ingest,
    kind: str,
    retry_after: float,
    sender: Sender,
    messages: Iterator[bytes],
    context: grpc.ServicerContext,
) -> bytes:
    """A call that has a slot: its one request message read, then stored."""
    body = next(messages, None)
    if body is None:  # gRPC refused a message past max_request_bytes (and answered), or the client sent none
        if context.is_active():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the call holds no export request")
        return b""
    try:
        return _reply(kind, ingest.export(kind, body, _peer(context), sender))
    except Malformed as error:
        ingest.metrics.receiver.refused.labels("malformed").inc()
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
    except Overloaded as error:
        _refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED, str(error), retry_after)
    except Unavailable as error:
        _refuse(context, grpc.StatusCode.UNAVAILABLE, code_pb2.UNAVAILABLE, str(error), retry_after)
    raise AssertionError("unreachable: abort raises")


def start_grpc(
    ingest: Ingest,
    address: str,
    *,
    retry_after: float,
    max_concurrent: int,
    max_message_bytes: int,
    senders: Senders | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.Server, int]:
    """Starts the OTLP/gRPC server on `address` (host:port), with TLS when given `credentials` and taking requests
    from `senders` only (default: anyone); returns it and the port bound. At most `max_concurrent` calls are taken
    at once, the others refused with RetryInfo before their message is read; gRPC itself refuses a message larger
    than `max_message_bytes` (RESOURCE_EXHAUSTED, not retried: it never fits) before reading it."""
    senders = senders or Senders()
    slots = Slots(max_concurrent)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_concurrent + SPARE_THREADS, thread_name_prefix="llmtally-grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            # No window growth from bandwidth probes: a call's message is taken in as it is read (a call waiting for
            # a thread, or refused, holds one 64 KiB window, not its whole message).
            ("grpc.http2.bdp_probe", 0),
        ],
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                service,
                {"Export": grpc.stream_unary_rpc_method_handler(_export(ingest, kind, retry_after, senders, slots))},
            )
            for kind, (service, _) in SERVICES.items()
        ]
    )
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {address}")
    server.start()
    return server, port
