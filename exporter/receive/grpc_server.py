"""OTLP/gRPC: the logs, trace and metrics export services.

The services take the request's protobuf bytes as they arrive (no deserializer): they are parsed where they are
normalised, in a worker process when the receiver has workers, so the receiving threads only move bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb2

from ..pipeline import Overloaded
from .decode import Malformed
from .ingest import Ingest, Outcome, Unavailable

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
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


def _export(ingest: Ingest, kind: str, retry_after: float) -> Callable[[bytes, grpc.ServicerContext], bytes]:
    def export(body: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            return _reply(kind, ingest.export(kind, body, _peer(context)))
        except Malformed as error:
            ingest.metrics.receiver.refused.labels("malformed").inc()
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except Overloaded as error:
            _refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED, str(error), retry_after)
        except Unavailable as error:
            _refuse(context, grpc.StatusCode.UNAVAILABLE, code_pb2.UNAVAILABLE, str(error), retry_after)
        raise AssertionError("unreachable: abort raises")

    return export


def start_grpc(ingest: Ingest, address: str, *, retry_after: float, workers: int = 8) -> tuple[grpc.Server, int]:
    """Starts the OTLP/gRPC server on `address` (host:port); returns it and the port bound."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llmtally-grpc"),
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
        maximum_concurrent_rpcs=workers * 4,  # past it gRPC itself answers RESOURCE_EXHAUSTED: memory stays bounded
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                service, {"Export": grpc.unary_unary_rpc_method_handler(_export(ingest, kind, retry_after))}
            )
            for kind, (service, _) in SERVICES.items()
        ]
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {address}")
    server.start()
    return server, port
