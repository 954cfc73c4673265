"""Only authorised senders write: ingest tokens on OTLP/gRPC and OTLP/HTTP of a real `llmtally serve`, tokens mapped
to services, the refusal to listen off loopback without them, and the OpenAPI document behind the API tokens.

The receiver listens on 0.0.0.0 (it may: it has ingest and API tokens) and holds a hard budget that one record
exceeds, so a forged record that got through would show in the budgets as well as in the store.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from google.rpc import code_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from llmtally.exporter.config import ConfigError, load
from llmtally.exporter.receive.credentials import Senders
from llmtally.exporter.store import open_store
from receiver import Receiver, free_port, metric_sum
from test_receiver import audit_logs

COLLECTOR = "collector-ingest-token-0123456789"  # any service; configured by its sha256
CHECKOUT = "checkout-ingest-token-0123456789"  # only service.name "checkout"
ADMIN = "admin-api-token-0123456789abcdef"
APP = "app-api-token-0123456789abcdefgh"
INGEST_TOKENS = [
    {"name": "collector", "token_sha256": hashlib.sha256(COLLECTOR.encode()).hexdigest()},
    {"name": "checkout", "token": CHECKOUT, "services": ["checkout"]},
]
API_TOKENS = [{"name": "ops", "role": "admin", "token": ADMIN}, {"name": "app", "role": "app", "token": APP}]
BUDGET = {"name": "tiny", "period": "monthly", "amount_usd": 0.000001, "mode": "hard"}  # one record exceeds it
PROTOBUF = {"content-type": "application/x-protobuf"}
LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def service_logs(*batches: tuple[str | None, int], start: int = 0) -> ExportLogsServiceRequest:
    """One export request with, per (service.name or None, count), a resource of that many audit events."""
    request = ExportLogsServiceRequest()
    for service, count in batches:
        (resource_logs,) = audit_logs(count, start=start, user=service or "none").resource_logs
        if service is not None:
            resource_logs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
        request.resource_logs.append(resource_logs)
        start += count
    return request


def emit(exporter: LogRecordExporter, service: str, count: int) -> None:
    """`count` llmtally audit events of `service` through a real OTLP exporter, one export per event."""
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("llmtally")
    for i in range(count):
        logger.emit(
            event_name="llmtally.completion",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 20,
                "llmtally.duration": 0.5,
                "user.id": f"{service}-{time.time_ns()}-{i}",
            },
        )
    provider.shutdown()


def stored(receiver: Receiver) -> list[Any]:
    with open_store(receiver.store) as store:
        return store.records_between(0, 2**63 - 1, limit=10_000)


def budget(receiver: Receiver) -> dict[str, Any]:
    answer = receiver.get("/api/v1/budgets", headers=bearer(ADMIN))
    assert answer.status_code == 200, answer.text
    (state,) = answer.json()["budgets"]
    return dict(state)


def refused(receiver: Receiver) -> float:
    return metric_sum(receiver.metrics(), "llmtally_receiver_refused_requests_total", reason="unauthenticated")


def grpc_export(receiver: Receiver, body: bytes, metadata: tuple[tuple[str, str], ...] = ()) -> bytes:
    with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
        return bytes(channel.unary_unary(LOGS_METHOD)(body, metadata=metadata, timeout=10))


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Receiver]:
    url = f"sqlite:///{tmp_path}/audit.db"
    receiver = Receiver(tmp_path, url, api={"tokens": API_TOKENS}, budgets=[BUDGET])
    receiver.settings["receiver"] = {
        "otlp_grpc": f"0.0.0.0:{receiver.grpc_port}",
        "http": f"0.0.0.0:{receiver.http_port}",
        "workers": 0,
        "ingest_tokens": INGEST_TOKENS,
    }
    receiver.start()
    try:
        yield receiver
    finally:
        assert receiver.stop() == 0


def test_forged_ingest_without_a_valid_token_is_refused_and_moves_nothing(guarded: Receiver) -> None:
    body = service_logs(("checkout", 5)).SerializeToString()
    wrong = [
        {},
        bearer("wrong-token-0123456789abcdefgh"),
        bearer(COLLECTOR[:-1]),
        bearer(ADMIN),  # an API token is not an ingest token
        {"authorization": COLLECTOR},  # no scheme
        {"authorization": f"Basic {COLLECTOR}"},
    ]
    for headers in wrong:
        for path in ("/v1/logs", "/v1/traces"):
            answer = httpx.post(f"{guarded.http_url}{path}", content=body, headers=PROTOBUF | headers, timeout=10)
            assert answer.status_code == 401, (headers, path, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert answer.headers["connection"] == "close"  # the body is never read
            status = status_pb2.Status.FromString(answer.content)
            assert status.code == code_pb2.UNAUTHENTICATED and "ingest token" in status.message
    as_json = httpx.post(
        f"{guarded.http_url}/v1/logs", content=b"{}", headers={"content-type": "application/json"}, timeout=10
    )
    assert as_json.status_code == 401 and "ingest token" in as_json.json()["message"]
    for metadata in ((), (("authorization", "Bearer wrong-token-0123456789abcdefgh"),)):
        with pytest.raises(grpc.RpcError) as raised:
            grpc_export(guarded, body, metadata)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "ingest token" in (raised.value.details() or "")
    http_refusals = 2 * len(wrong) + 1
    assert refused(guarded) == http_refusals + 2

    # Real OTLP exporters without a token: each export is refused once, and not retried.
    started = time.monotonic()
    emit(GrpcLogExporter(endpoint=guarded.grpc_endpoint, insecure=True), "checkout", 2)
    emit(HttpLogExporter(endpoint=f"{guarded.http_url}/v1/logs"), "checkout", 2)
    assert time.monotonic() - started < 5  # a retried export would back off for seconds
    assert refused(guarded) == http_refusals + 2 + 4

    assert stored(guarded) == []
    state = budget(guarded)
    assert state["spent_nusd"] == 0 and state["exceeded"] is False
    assert metric_sum(guarded.metrics(), "completion_requests_total") == 0


def test_a_valid_token_in_the_standard_headers_variable_is_accepted(
    guarded: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The specification's form (URL-encoded) for gRPC, the form other SDKs accept too (a plain space) for HTTP.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{COLLECTOR}")
    emit(GrpcLogExporter(endpoint=guarded.grpc_endpoint, insecure=True), "billing", 3)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer {CHECKOUT}")
    emit(HttpLogExporter(endpoint=f"{guarded.http_url}/v1/logs"), "checkout", 2)
    records = stored(guarded)
    assert sorted(r.service for r in records) == ["billing"] * 3 + ["checkout"] * 2
    assert refused(guarded) == 0
    state = budget(guarded)
    assert state["spent_nusd"] == sum(r.customer_cost_nusd for r in records) > 0
    assert state["exceeded"] is True


def test_a_token_mapped_to_services_writes_only_for_them(guarded: Receiver) -> None:
    mixed = service_logs(("checkout", 2), ("billing", 3), (None, 1))
    answer = httpx.post(
        f"{guarded.http_url}/v1/logs", content=mixed.SerializeToString(), headers=PROTOBUF | bearer(CHECKOUT)
    )
    assert answer.status_code == 200
    partial = ExportLogsServiceResponse.FromString(answer.content).partial_success
    assert partial.rejected_log_records == 4
    assert "ingest token 'checkout' may not write for service 'billing' (only checkout)" in partial.error_message
    assert "service None" in partial.error_message

    over_grpc = service_logs(("billing", 2), ("checkout", 1), start=100).SerializeToString()
    reply = ExportLogsServiceResponse.FromString(
        grpc_export(guarded, over_grpc, (("authorization", f"Bearer {CHECKOUT}"),))
    )
    assert reply.partial_success.rejected_log_records == 2
    assert "'billing'" in reply.partial_success.error_message

    assert sorted(r.service for r in stored(guarded)) == ["checkout"] * 3
    exposition = guarded.metrics()
    assert metric_sum(exposition, "llmtally_receiver_rejected_total", signal="log_records") == 6
    assert metric_sum(exposition, "llmtally_receiver_accepted_total", signal="log_records") == 3

    # The same billing records with the collector's token (any service): stored.
    again = httpx.post(f"{guarded.http_url}/v1/logs", content=over_grpc, headers=PROTOBUF | bearer(COLLECTOR))
    assert ExportLogsServiceResponse.FromString(again.content).partial_success.rejected_log_records == 0
    assert sorted(r.service for r in stored(guarded)) == ["billing"] * 2 + ["checkout"] * 3


def test_the_openapi_document_needs_an_api_token(guarded: Receiver) -> None:
    path = "/api/v1/openapi.json"
    for headers in ({}, bearer("wrong-token-0123456789abcdefgh"), bearer(COLLECTOR)):
        answer = guarded.get(path, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"] == "Bearer"
    assert guarded.get(path, headers=bearer(APP)).status_code == 403  # an app token reads the budgets only
    document = guarded.get(path, headers=bearer(ADMIN))
    assert document.status_code == 200
    assert "/api/v1/usage" in document.json()["paths"]


def serve(tmp_path: Path, *flags: str, config: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "llmtally.yaml"
    path.write_text(yaml.safe_dump({"store": f"sqlite:///{tmp_path}/audit.db", **(config or {})}))
    command = [str(Path(sys.executable).with_name("llmtally")), "serve", "--config", str(path), *flags]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMTALLY_", "OTEL_"))}
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("exposed", ["otlp_grpc", "http"])
def test_serve_refuses_to_listen_off_loopback_without_ingest_tokens(tmp_path: Path, exposed: str) -> None:
    grpc_address = f"{'0.0.0.0' if exposed == 'otlp_grpc' else '127.0.0.1'}:{free_port()}"
    http_address = f"{'0.0.0.0' if exposed == 'http' else '127.0.0.1'}:{free_port()}"
    # API tokens are there (the API's own rule is met): only the ingest tokens are missing.
    done = serve(tmp_path, "--otlp-grpc", grpc_address, "--http", http_address, config={"api": {"tokens": API_TOKENS}})
    assert done.returncode == 2, done.stderr
    assert "receiver.ingest_tokens" in done.stderr and "without ingest tokens" in done.stderr
    assert f"0.0.0.0:{(grpc_address if exposed == 'otlp_grpc' else http_address).rpartition(':')[2]}" in done.stderr


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"name": "a", "token": "short"}], r"receiver\.ingest_tokens\[0\]\.token must be a string of at least 16"),
        ([{"name": "a"}], r"receiver\.ingest_tokens\[0\]: give exactly one of token and token_sha256"),
        ([{"token_sha256": "z" * 64}], r"receiver\.ingest_tokens\[0\]\.token_sha256 must be 64 hex digits"),
        ([{"token": COLLECTOR, "services": "checkout"}], r"\[0\]\.services must be a non-empty list"),
        ([{"token": COLLECTOR, "role": "admin"}], r"\[0\]: unknown key\(s\) role"),
        ([{"token": COLLECTOR}, {"token": COLLECTOR}], r"\[1\]: the same token as receiver\.ingest_tokens\[0\]"),
        ("not-a-list", r"receiver\.ingest_tokens must be a list"),
    ],
)
def test_bad_ingest_tokens_name_their_entry(entries: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Senders.parse(entries)


def test_bad_ingest_tokens_stop_serve_with_exit_2(tmp_path: Path) -> None:
    addresses = ("--otlp-grpc", f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{free_port()}")
    done = serve(tmp_path, *addresses, config={"receiver": {"ingest_tokens": [{"name": "a", "token": "short"}]}})
    assert done.returncode == 2 and "receiver.ingest_tokens[0].token" in done.stderr, done.stderr
    path = tmp_path / "bad.yaml"
    path.write_text("receiver:\n  ingest_tokens: {name: a}\n")
    with pytest.raises(ConfigError, match=r"receiver\.ingest_tokens must be a list"):
        load(str(path), env={})
