"""A minimal OTLP/gRPC sink for tests: keeps every export request it receives, raw bytes included."""

from __future__ import annotations

import threading
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as logs_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


class OTLPSink(trace_grpc.TraceServiceServicer, metrics_grpc.MetricsServiceServicer, logs_grpc.LogsServiceServicer):
    """Serves the three OTLP export services on 127.0.0.1 and stores what arrives."""

    def __init__(self) -> None:
        self.traces: list[trace_pb2.ExportTraceServiceRequest] = []
        self.metrics: list[metrics_pb2.ExportMetricsServiceRequest] = []
        self.logs: list[logs_pb2.ExportLogsServiceRequest] = []
        self.raw = bytearray()
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_grpc.add_TraceServiceServicer_to_server(self, self._server)
        metrics_grpc.add_MetricsServiceServicer_to_server(self, self._server)
        logs_grpc.add_LogsServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def __enter__(self) -> OTLPSink:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _keep(self, store: list[Any], request: Any) -> None:
        with self._lock:
            store.append(request)
            self.raw += request.SerializeToString()

    def Export(self, request: Any, context: Any) -> Any:
        if isinstance(request, trace_pb2.ExportTraceServiceRequest):
            self._keep(self.traces, request)
            return trace_pb2.ExportTraceServiceResponse()
        if isinstance(request, metrics_pb2.ExportMetricsServiceRequest):
            self._keep(self.metrics, request)
            return metrics_pb2.ExportMetricsServiceResponse()
        self._keep(self.logs, request)
        return logs_pb2.ExportLogsServiceResponse()

    def spans(self) -> list[tuple[str, Any]]:
        """(scope name, span) for every span received."""
        return [
            (scope.scope.name, span)
            for request in self.traces
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def log_records(self) -> list[Any]:
        return [
            record
            for request in self.logs
            for resource in request.resource_logs
            for scope in resource.scope_logs
            for record in scope.log_records
        ]

    def metric_points(self, name: str) -> list[Any]:
        return [
            point
            for request in self.metrics
            for resource in request.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.sum.data_points
        ]


def attributes(items: Any) -> dict[str, Any]:
    """OTLP KeyValue list -> dict of plain values."""
    return {kv.key: _value(kv.value) for kv in items}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None
