"""OTLP/gRPC: the logs, trace and metrics export services."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as logs_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc

from ..pipeline import Overloaded
from .ingest import Ingest, Outcome, Unavailable

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


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


class _Services(trace_grpc.TraceServiceServicer, logs_grpc.LogsServiceServicer, metrics_grpc.MetricsServiceServicer):
    def __init__(self, ingest: Ingest, retry_after: float) -> None:
        self.ingest = ingest
        self.retry_after = retry_after

    def _export(self, kind: str, request: Any, context: grpc.ServicerContext) -> Outcome:
        try:
            return self.ingest.export(kind, request, _peer(context))
        except Overloaded as error:
            _refuse(
                context, grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED, str(error), self.retry_after
            )
        except Unavailable as error:
            _refuse(context, grpc.StatusCode.UNAVAILABLE, code_pb2.UNAVAILABLE, str(error), self.retry_after)
        raise AssertionError("unreachable: abort raises")

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, logs_pb2.ExportLogsServiceRequest):
            outcome = self._export("logs", request, context)
            reply = logs_pb2.ExportLogsServiceResponse()
            if outcome.rejected:
                reply.partial_success.rejected_log_records = outcome.rejected
                reply.partial_success.error_message = outcome.message
            return reply
        if isinstance(request, trace_pb2.ExportTraceServiceRequest):
            outcome = self._export("traces", request, context)
            trace_reply = trace_pb2.ExportTraceServiceResponse()
            if outcome.rejected:
                trace_reply.partial_success.rejected_spans = outcome.rejected
                trace_reply.partial_success.error_message = outcome.message
            return trace_reply
        self._export("metrics", request, context)
        return metrics_pb2.ExportMetricsServiceResponse()


def start_grpc(ingest: Ingest, address: str, *, retry_after: float, workers: int = 8) -> tuple[grpc.Server, int]:
    """Starts the OTLP/gRPC server on `address` (host:port); returns it and the port bound."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llmtally-grpc"),
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
        maximum_concurrent_rpcs=workers * 4,  # past it gRPC itself answers RESOURCE_EXHAUSTED: memory stays bounded
    )
    services = _Services(ingest, retry_after)
    trace_grpc.add_TraceServiceServicer_to_server(services, server)  # type: ignore[no-untyped-call]
    logs_grpc.add_LogsServiceServicer_to_server(services, server)  # type: ignore[no-untyped-call]
    metrics_grpc.add_MetricsServiceServicer_to_server(services, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {address}")
    server.start()
    return server, port
