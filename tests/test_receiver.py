"""`llmtally serve` end to end: instrumented apps export over real OTLP to a real receiver subprocess."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import threading
import time
from decimal import Decimal
from pathlib import Path

import genai_prices
import httpx
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from instrumented_app import APP_CALLS, run_instrumented_app
from llmtally.exporter.store import open_store
from receiver import Receiver, metric_sum

ALL_TIME = (0, 2**63 - 1)
PROTOBUF = {"content-type": "application/x-protobuf"}


def run_app(provider, tmp_path: Path, **env: str) -> None:
    run_instrumented_app(provider.base_url, tmp_path, **env)


def expected_cost_nusd(record) -> int | None:
    """The provider cost genai-prices itself computes for a stored record."""
    provider_id = {"openai": "openai", "anthropic": "anthropic"}.get(record.provider)
    if provider_id is None:
        return None
    usage = genai_prices.Usage(
        input_tokens=record.input_tokens,
        cache_read_tokens=record.cached_tokens,
        cache_write_tokens=record.cache_write_tokens,
        output_tokens=record.output_tokens,
    )
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(record.start_time_ns / 1e9, UTC)
    result = genai_prices.calc_price(
        usage, record.response_model or record.request_model, provider_id=provider_id, genai_request_timestamp=when
    )
    return int((result.total_price * Decimal(10**9)).to_integral_value())


def check_app_records(store_url: str, exposition: str) -> None:
    store = open_store(store_url)
    try:
        records = store.records_between(*ALL_TIME, limit=100)
    finally:
        store.close()
    # Each request arrived twice (span and audit event): stored once.
    assert len(records) == APP_CALLS
    assert {r.source for r in records} == {"llmtally"}
    by_provider = {}
    for record in records:
        by_provider.setdefault(record.provider, []).append(record)
        expected = expected_cost_nusd(record)
        if expected is not None and record.operation != "embeddings":
            assert record.priced, record
            # To the cent (in fact to the nano-dollar) against genai-prices.
            assert record.provider_cost_nusd == expected, (record.request_model, record.provider_cost_nusd, expected)
            assert record.customer_cost_nusd == expected
    assert set(by_provider) == {"openai", "anthropic", "ollama", "gcp.gemini", "aws.bedrock"}
    ollama = by_provider["ollama"][0]
    assert not ollama.priced and ollama.price_source == "unpriced" and ollama.provider_cost_nusd is None
    assert metric_sum(exposition, "completion_requests_total") == APP_CALLS
    assert metric_sum(exposition, "completion_unpriced_requests_total") == 1
    stored_cost = sum(r.provider_cost_nusd or 0 for r in records) / 1e9
    assert metric_sum(exposition, "completion_provider_cost_usd_total") == pytest.approx(stored_cost, abs=1e-9)
    assert metric_sum(exposition, "completion_tokens_prompt_total") == sum(r.input_tokens for r in records)
    assert metric_sum(exposition, "completion_requests_total", feature="signal_parsing") == 4
    assert metric_sum(exposition, "llmtally_receiver_duplicate_records_total") >= APP_CALLS


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_instrumented_app_is_stored_priced_and_exposed(provider, tmp_path, protocol):
    url = f"sqlite:///{tmp_path}/audit.db"
    receiver = Receiver(tmp_path, url).start()
    try:
        endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_url
        run_app(provider, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_EXPORTER_OTLP_PROTOCOL=protocol)
        exposition = receiver.metrics()
    finally:
        assert receiver.stop() == 0
    check_app_records(url, exposition)


@pytest.fixture
def postgres_dsn(pg_server):
    dsn = pg_server.create_database()
    yield dsn
    pg_server.drop_database(dsn)


def test_instrumented_app_into_postgresql(provider, tmp_path, postgres_dsn):
    receiver = Receiver(tmp_path, postgres_dsn).start()
    try:
        run_app(provider, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint)
        exposition = receiver.metrics()
    finally:
        assert receiver.stop() == 0
    check_app_records(postgres_dsn, exposition)


def test_peer_instrumentations_alone_are_recorded_once_per_call(provider, tmp_path):
    """Without llmtally in the app: the official GenAI and OpenLLMetry spans (both wrap the OpenAI SDK, nested)
    and the Anthropic SDK's own spans become one record per call."""
    url = f"sqlite:///{tmp_path}/audit.db"
    receiver = Receiver(tmp_path, url).start()
    try:
        run_app(
            provider,
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint,
            OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="llmtally_openai,llmtally_anthropic,llmtally_http",
        )
    finally:
        assert receiver.stop() == 0
    store = open_store(url)
    try:
        records = store.records_between(*ALL_TIME, limit=100)
    finally:
        store.close()
    anthropic_records = [r for r in records if r.provider == "anthropic"]
    assert {r.source for r in anthropic_records} == {"anthropic"} and len(anthropic_records) == 2
    openai_records = [r for r in records if r.provider == "openai"]
    assert {r.source for r in openai_records} <= {"otel-genai", "openllmetry"}
    # Five OpenAI calls (chat, chat stream, responses, embeddings, completions), each once whoever saw it.
    assert len(openai_records) == 5, [(r.source, r.request_model, r.operation) for r in openai_records]
    chat = next(r for r in openai_records if r.operation == "chat" and not r.stream)
    assert chat.input_tokens > 0 and chat.priced


def audit_logs(count: int, *, start: int = 0, user: str = "u", model: str = "gpt-4o-mini") -> ExportLogsServiceRequest:
    """An export request with `count` llmtally audit events, span ids start..start+count."""

    def kv(key, value):
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        if isinstance(value, float):
            return KeyValue(key=key, value=AnyValue(double_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    now = time.time_ns()
    records = []
    for i in range(start, start + count):
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": model,
            "gen_ai.response.model": model,
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20,
            "llmtally.usage.source": "provider",
            "llmtally.duration": 0.5,
            "user.id": f"{user}-{i}",
            "llmtally.feature": "search",
        }
        records.append(
            LogRecord(
                time_unix_nano=now,
                event_name="llmtally.completion",
                trace_id=os.urandom(16),
                span_id=(i + 1).to_bytes(8, "big"),
                attributes=[kv(k, v) for k, v in attrs.items()],
            )
        )
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])])


def to_otlp_json(request) -> bytes:
    """OTLP/JSON: protobuf's JSON mapping, but trace and span ids in hex."""
    data = json_format.MessageToDict(request)
    for resource in data["resourceLogs"]:
        for scope in resource["scopeLogs"]:
            for record in scope["logRecords"]:
                for key in ("traceId", "spanId"):
                    import base64

                    record[key] = base64.b64decode(record[key]).hex()
    return json.dumps(data).encode()


@pytest.fixture
def sqlite_receiver(tmp_path):
    receiver = Receiver(tmp_path, f"sqlite:///{tmp_path}/audit.db").start()
    yield receiver
    assert receiver.stop() == 0


def stored(receiver: Receiver) -> int:
    store = open_store(receiver.store)
    try:
        return store.count()
    finally:
        store.close()


def test_otlp_http_protobuf_json_and_gzip_with_retries_counted_once(sqlite_receiver):
    logs = f"{sqlite_receiver.http_url}/v1/logs"
    batch = audit_logs(50)
    first = httpx.post(logs, content=batch.SerializeToString(), headers=PROTOBUF)
    assert first.status_code == 200
    assert ExportLogsServiceResponse.FromString(first.content).partial_success.rejected_log_records == 0
    # The same batch again (a client retry), as JSON, and gzipped: nothing new.
    assert (
        httpx.post(logs, content=to_otlp_json(batch), headers={"content-type": "application/json"}).status_code == 200
    )
    zipped = gzip.compress(batch.SerializeToString())
    assert httpx.post(logs, content=zipped, headers={**PROTOBUF, "content-encoding": "gzip"}).status_code == 200
    more = to_otlp_json(audit_logs(30, start=50))
    answer = httpx.post(logs, content=more, headers={"content-type": "application/json"})
    assert answer.status_code == 200 and answer.json() == {}
    assert stored(sqlite_receiver) == 80
    exposition = sqlite_receiver.metrics()
    assert metric_sum(exposition, "completion_requests_total") == 80
    assert metric_sum(exposition, "llmtally_receiver_duplicate_records_total") == 100


def test_malformed_payloads_get_a_clear_400_and_lose_nothing(sqlite_receiver):
    logs = f"{sqlite_receiver.http_url}/v1/logs"
    bad = httpx.post(logs, content=b"\x0a\xff\xff\xff garbage", headers=PROTOBUF)
    assert bad.status_code == 400
    assert "protobuf" in status_pb2.Status.FromString(bad.content).message
    bad_json = httpx.post(logs, content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and "not JSON" in bad_json.json()["message"]
    assert httpx.post(logs, content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    bad_zip = httpx.post(logs, content=b"not gzip", headers={**PROTOBUF, "content-encoding": "gzip"})
    assert bad_zip.status_code == 400
    # Partial success: one event without a model is rejected, the others are stored.
    batch = audit_logs(3)
    del batch.resource_logs[0].scope_logs[0].log_records[1].attributes[2]  # gen_ai.request.model
    answer = ExportLogsServiceResponse.FromString(
        httpx.post(logs, content=batch.SerializeToString(), headers=PROTOBUF).content
    )
    assert answer.partial_success.rejected_log_records == 1
    assert "gen_ai.request.model" in answer.partial_success.error_message
    assert stored(sqlite_receiver) == 2
    assert metric_sum(sqlite_receiver.metrics(), "llmtally_receiver_rejected_total", signal="log_records") == 1


def test_grpc_malformed_is_invalid_argument(sqlite_receiver):
    import grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{sqlite_receiver.grpc_port}")
    call = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")
    with pytest.raises(grpc.RpcError) as raised:
        call(b"\x0a\xff\xff\xff garbage", timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a protobuf ExportLogsServiceRequest" in (raised.value.details() or "")
    assert metric_sum(sqlite_receiver.metrics(), "llmtally_receiver_refused_requests_total", reason="malformed") == 1
    assert call(audit_logs(3).SerializeToString(), timeout=10) == b""  # the receiver goes on: an empty answer
    assert stored(sqlite_receiver) == 3


def test_restart_between_batches_loses_and_doubles_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/audit.db"
    receiver = Receiver(tmp_path, url).start()
    logs = f"{receiver.http_url}/v1/logs"
    assert httpx.post(logs, content=audit_logs(40).SerializeToString(), headers=PROTOBUF).status_code == 200
    assert receiver.stop() == 0
    receiver = Receiver(tmp_path, url).start()
    logs = f"{receiver.http_url}/v1/logs"
    try:
        # The first batch again (the client never saw the answer) and a new one.
        for batch in (audit_logs(40), audit_logs(25, start=40)):
            assert httpx.post(logs, content=batch.SerializeToString(), headers=PROTOBUF).status_code == 200
        # This process stored only the new batch, and says so.
        assert metric_sum(receiver.metrics(), "completion_requests_total") == 25
    finally:
        assert receiver.stop() == 0
    assert stored(receiver) == 65


def test_full_queue_answers_429_with_retry_after_and_stores_after(tmp_path):
    db = tmp_path / "audit.db"
    receiver = Receiver(tmp_path, f"sqlite:///{db}", receiver={"queue_records": 10, "retry_after_seconds": 2}).start()
    logs = f"{receiver.http_url}/v1/logs"
    try:
        blocker = sqlite3.connect(db, timeout=30)
        blocker.execute("BEGIN EXCLUSIVE")  # the writer now waits for the database
        first: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: first.append(
                httpx.post(logs, content=audit_logs(8).SerializeToString(), headers=PROTOBUF, timeout=60)
            )
        )
        sender.start()
        time.sleep(0.5)
        refused = httpx.post(logs, content=audit_logs(8, start=100).SerializeToString(), headers=PROTOBUF)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
        assert status_pb2.Status.FromString(refused.content).code == 8  # RESOURCE_EXHAUSTED
        blocker.rollback()
        blocker.close()
        sender.join(60)
        assert first[0].status_code == 200  # acknowledged only once stored
        retried = httpx.post(logs, content=audit_logs(8, start=100).SerializeToString(), headers=PROTOBUF)
        assert retried.status_code == 200
    finally:
        assert receiver.stop() == 0
    assert stored(receiver) == 16


def test_metrics_pass_promtool_and_stay_bounded_under_100k_users(sqlite_receiver):
    logs = f"{sqlite_receiver.http_url}/v1/logs"
    for start in range(0, 100_000, 5_000):
        batch = audit_logs(5_000, start=start, user="flood")
        assert httpx.post(logs, content=batch.SerializeToString(), headers=PROTOBUF, timeout=60).status_code == 200
    exposition = sqlite_receiver.metrics()
    assert metric_sum(exposition, "completion_requests_total") == 100_000
    series = [line for line in exposition.splitlines() if line.startswith("completion_requests_total{")]
    assert len(series) == 1
    assert "flood-" not in exposition
    check = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_health_and_readiness(sqlite_receiver):
    assert httpx.get(f"{sqlite_receiver.http_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{sqlite_receiver.http_url}/readyz").json() == {"status": "ready"}
    metrics_answer = httpx.post(f"{sqlite_receiver.http_url}/v1/metrics", content=b"", headers=PROTOBUF)
    assert metrics_answer.status_code == 200


def test_database_that_goes_away_refuses_with_503_and_loses_nothing(tmp_path, pg_server, postgres_dsn):
    receiver = Receiver(tmp_path, postgres_dsn, receiver={"retry_after_seconds": 1}).start()
    logs = f"{receiver.http_url}/v1/logs"
    try:
        assert httpx.post(logs, content=audit_logs(30).SerializeToString(), headers=PROTOBUF).status_code == 200
        pg_server.stop()
        refused = httpx.post(logs, content=audit_logs(20, start=30).SerializeToString(), headers=PROTOBUF, timeout=60)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert status_pb2.Status.FromString(refused.content).code == 14  # UNAVAILABLE
        assert httpx.get(f"{receiver.http_url}/readyz").status_code == 503
        pg_server.start()
        # The client retries the refused batch: stored once, and counted once.
        retried = httpx.post(logs, content=audit_logs(20, start=30).SerializeToString(), headers=PROTOBUF, timeout=60)
        assert retried.status_code == 200
        assert httpx.get(f"{receiver.http_url}/readyz").status_code == 200
        assert metric_sum(receiver.metrics(), "completion_requests_total") == 50
    finally:
        assert receiver.stop() == 0
    assert stored(receiver) == 50


def test_text_with_nul_characters_is_stored_in_postgresql(tmp_path, postgres_dsn):
    receiver = Receiver(tmp_path, postgres_dsn).start()
    try:
        batch = audit_logs(3, user="nul\x00byte")
        answer = httpx.post(f"{receiver.http_url}/v1/logs", content=batch.SerializeToString(), headers=PROTOBUF)
        assert answer.status_code == 200
    finally:
        assert receiver.stop() == 0
    store = open_store(postgres_dsn)
    try:
        users = sorted(r.user_id or "" for r in store.records_between(*ALL_TIME, limit=10))
    finally:
        store.close()
    assert users == ["nul\ufffdbyte-0", "nul\ufffdbyte-1", "nul\ufffdbyte-2"]
