"""Ingest you can trust: a body that cannot be decoded is 400 / INVALID_ARGUMENT (never 5xx), gzip is inflated whole
or refused, bodies and what they inflate to are bounded while they stream, calls past the concurrency bounds are
refused with RetryInfo / Retry-After and counted (so a collector retries them and loses nothing), and a flood of
maximal bodies keeps the receiver within its documented memory bound. All against real `llmtally serve` processes."""

from __future__ import annotations

import contextlib
import gzip
import json
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from test_poison import WriterBlock, span, traces

from alerting_stack import wait_for
from collector import ROOT, Collector, build_collector
from llmtally.exporter.config import Config, ConfigError, load
from llmtally.exporter.store import open_store
from receiver import Receiver, metric_sum
from test_receiver import audit_logs, to_otlp_json

MIB = 1024 * 1024
LIMIT = MIB  # receiver.max_request_bytes of the receivers below
PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}
GZIP = {"content-encoding": "gzip"}
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


# --- helpers ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    """One receiver on SQLite for the tests that need no store of their own: bodies up to 1 MiB."""
    workdir = tmp_path_factory.mktemp("limited")
    receiver = Receiver(workdir, f"sqlite:///{workdir}/audit.db", receiver={"max_request_bytes": LIMIT}).start()
    yield receiver
    assert receiver.stop() == 0


def refused(receiver: Receiver, reason: str) -> float:
    return metric_sum(receiver.metrics(), "llmtally_receiver_refused_requests_total", reason=reason)


def stored(receiver: Receiver) -> int:
    with contextlib.closing(open_store(receiver.store)) as store:
        return store.count()


def grpc_export(receiver: Receiver, method: str = LOGS) -> Callable[..., bytes]:
    """The raw Export method (bytes in, bytes out), sending messages of any size."""
    channel = grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}", options=[("grpc.max_send_message_length", -1)])
    return channel.unary_unary(method)  # type: ignore[no-any-return]


def retry_delay(error: grpc.RpcError) -> float | None:
    """The RetryInfo delay in a gRPC error's google.rpc.Status details (what OTLP exporters honour), if any."""
    for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


def chunks(total: int, sent: list[int]) -> Iterator[bytes]:
    """`total` bytes in 1 MiB chunks, counted in `sent` as the client hands them over (no Content-Length)."""
    for _ in range(total // MIB):
        sent[0] += MIB
        yield bytes(MIB)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    key, size, out = (number << 3) | 2, len(payload), bytearray()
    out.append(key)
    while size > 0x7F:
        out.append(size & 0x7F | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out) + payload


def nested_protobuf(depth: int) -> bytes:
    """A logs request whose one audit event's body is an arrayValue nested `depth` deep (written by hand: protobuf's
    own classes refuse to build it)."""
    value = _field(1, b"x")  # AnyValue.string_value
    for _ in range(depth):
        value = _field(5, _field(1, value))  # AnyValue.array_value -> ArrayValue.values
    event = LogRecord(event_name="llmtally.completion", time_unix_nano=time.time_ns()).SerializeToString()
    return _field(1, _field(2, _field(2, event + _field(5, value))))  # resource_logs.scope_logs.log_records


def nested_json(depth: int) -> bytes:
    value = '{"arrayValue":{"values":[' * depth + '{"stringValue":"x"}' + "]}}" * depth
    event = f'{{"eventName":"llmtally.completion","timeUnixNano":"{time.time_ns()}","body":{value}}}'
    return f'{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{event}]}}]}}]}}'.encode()


# --- bodies that cannot be decoded: 400, never 5xx ----------------------------------------------------------------

DEEP = {
    "brackets": ("http/json", b'{"resourceLogs":' + b"[" * 5000 + b"]" * 5000 + b"}"),
    "arrayValue-json": ("http/json", nested_json(300)),
    "arrayValue-protobuf": ("http/protobuf", nested_protobuf(300)),
    "arrayValue-grpc": ("grpc", nested_protobuf(300)),
}


@pytest.mark.parametrize("case", DEEP, ids=list(DEEP))
def test_a_body_nested_too_deeply_is_invalid_argument_not_a_server_error(limited: Receiver, case: str) -> None:
    transport, body = DEEP[case]
    before = refused(limited, "malformed")
    if transport == "grpc":
        with pytest.raises(grpc.RpcError) as raised:
            grpc_export(limited)(body, timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    else:
        headers = JSON if transport == "http/json" else PROTOBUF
        answer = httpx.post(f"{limited.http_url}/v1/logs", content=body, headers=headers, timeout=30)
        assert answer.status_code == 400, answer.text
        if transport == "http/json":
            status = answer.json()
            assert status["code"] == 3 and ("nested" in status["message"] or "depth" in status["message"]), status
        else:
            assert status_pb2.Status.FromString(answer.content).code == 3
    assert refused(limited, "malformed") == before + 1
    # The receiver goes on.
    good = audit_logs(2, start=3 * 10**6 + list(DEEP).index(case) * 10)
    assert httpx.post(f"{limited.http_url}/v1/logs", content=good.SerializeToString(), headers=PROTOBUF).is_success


# --- gzip: every member, or refused -------------------------------------------------------------------------------


@pytest.mark.parametrize("media", ["protobuf", "json"])
def test_every_gzip_member_is_inflated_and_stored(tmp_path: Path, store_url: str, media: str) -> None:
    """`gzip.compress(a) + gzip.compress(b)` is the body a + b (RFC 1952, what `gzip -c a b` writes): protobuf merges
    two requests into one; a JSON document may be split across members."""
    receiver = Receiver(tmp_path, store_url).start()
    try:
        if media == "protobuf":
            first, second = audit_logs(3).SerializeToString(), audit_logs(4, start=3).SerializeToString()
            headers = {**PROTOBUF, **GZIP}
        else:
            whole = to_otlp_json(audit_logs(7))
            first, second = whole[: len(whole) // 2], whole[len(whole) // 2 :]
            headers = {**JSON, **GZIP}
        body = gzip.compress(first) + gzip.compress(second)
        answer = httpx.post(f"{receiver.http_url}/v1/logs", content=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        assert stored(receiver) == 7  # both members' records, none dropped
        assert metric_sum(receiver.metrics(), "llmtally_receiver_accepted_total", signal="log_records") == 7
    finally:
        assert receiver.stop() == 0


def _zipped(start: int) -> bytes:
    return gzip.compress(audit_logs(3, start=start).SerializeToString())


NOT_WHOLE = {
    "trailer cut": (lambda z: z[:-4], "cut short"),
    "cut in the middle": (lambda z: z[: len(z) // 2], "cut short"),
    "second member cut": (lambda z: z + z[:-8], "cut short"),
    "garbage after the member": (lambda z: z + b"garbage", "bad gzip"),
    "empty": (lambda z: b"", "empty"),
}


@pytest.mark.parametrize("case", NOT_WHOLE, ids=list(NOT_WHOLE))
def test_a_gzip_body_that_is_not_whole_is_refused_and_nothing_of_it_stored(limited: Receiver, case: str) -> None:
    cut, reason = NOT_WHOLE[case]
    before, count = refused(limited, "malformed"), stored(limited)
    body = cut(_zipped(start=10**6 + list(NOT_WHOLE).index(case) * 10))
    answer = httpx.post(f"{limited.http_url}/v1/logs", content=body, headers={**PROTOBUF, **GZIP}, timeout=30)
    assert answer.status_code == 400, answer.text
    status = status_pb2.Status.FromString(answer.content)
    assert status.code == 3 and reason in status.message, status
    assert stored(limited) == count
    assert refused(limited, "malformed") == before + 1


def test_a_gzip_bomb_is_refused_413_as_it_inflates(limited: Receiver) -> None:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = b"".join([*(squeeze.compress(bytes(MIB)) for _ in range(256)), squeeze.flush()])  # 256 MiB of zeros
    assert len(bomb) < LIMIT
    before = refused(limited, "too_large")
    answer = httpx.post(f"{limited.http_url}/v1/logs", content=bomb, headers={**PROTOBUF, **GZIP}, timeout=30)
    assert answer.status_code == 413, answer.text
    assert "inflates to more than 1048576 bytes" in status_pb2.Status.FromString(answer.content).message
    assert refused(limited, "too_large") == before + 1


# --- bodies past the limit: refused as they stream ----------------------------------------------------------------


def test_a_body_past_the_limit_is_refused_413_without_reading_the_rest(limited: Receiver) -> None:
    logs, before = f"{limited.http_url}/v1/logs", refused(limited, "too_large")
    declared = httpx.post(logs, content=bytes(2 * LIMIT), headers=PROTOBUF, timeout=30)
    assert declared.status_code == 413 and declared.headers["connection"] == "close"
    assert "Content-Length 2097152" in status_pb2.Status.FromString(declared.content).message
    sent = [0]
    streamed = httpx.post(logs, content=chunks(256 * MIB, sent), headers=PROTOBUF, timeout=30)
    assert streamed.status_code == 413 and streamed.headers["connection"] == "close"
    assert sent[0] < 32 * MIB, sent  # the receiver stopped reading past 1 MiB (what remains is in socket buffers)
    assert refused(limited, "too_large") == before + 2


def test_a_grpc_message_past_the_limit_is_refused_before_it_is_read(limited: Receiver) -> None:
    """gRPC itself refuses it (RESOURCE_EXHAUSTED without RetryInfo: it never fits, OTLP exporters drop it)."""
    count = stored(limited)
    message = audit_logs(6000, start=2 * 10**6).SerializeToString()  # a valid request of ~2.4 MB
    assert len(message) > 2 * LIMIT
    with pytest.raises(grpc.RpcError) as raised:
        grpc_export(limited)(message, timeout=30)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (raised.value.details() or "")
    assert retry_delay(raised.value) is None
    assert stored(limited) == count


# --- concurrency bounds: refused at once, retryable, counted ------------------------------------------------------


def test_requests_past_the_concurrency_bounds_are_refused_retryably_and_counted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/audit.db"
    settings = {"max_concurrent_grpc_requests": 2, "max_concurrent_http_requests": 2, "retry_after_seconds": 1}
    receiver = Receiver(tmp_path, url, receiver=settings).start()
    logs = f"{receiver.http_url}/v1/logs"
    try:
        answers: list[Any] = []

        def send(transport: str, n: int) -> None:
            body = audit_logs(5, start=n * 5).SerializeToString()
            if transport == "grpc":
                answers.append(grpc_export(receiver)(body, timeout=60))
            else:
                answers.append(httpx.post(logs, content=body, headers=PROTOBUF, timeout=60).status_code)

        with WriterBlock(url) as block:  # the store holds every write: the first requests stay in flight
            senders = [threading.Thread(target=send, args=(t, n)) for n, t in enumerate(["grpc"] * 2 + ["http"] * 2)]
            for sender in senders:
                sender.start()
            wait_for(lambda: metric_sum(receiver.metrics(), "llmtally_receiver_queue_depth") == 20, 30, "in flight")
            with pytest.raises(grpc.RpcError) as raised:
                grpc_export(receiver)(audit_logs(5, start=100).SerializeToString(), timeout=10)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert retry_delay(raised.value) == 1.0  # the Collector retries RESOURCE_EXHAUSTED only with RetryInfo
            assert "max_concurrent_grpc_requests" in (raised.value.details() or "")
            sent = [0]
            busy = httpx.post(logs, content=chunks(256 * MIB, sent), headers=PROTOBUF, timeout=10)
            assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
            assert status_pb2.Status.FromString(busy.content).code == 8  # RESOURCE_EXHAUSTED
            assert sent[0] < 32 * MIB  # refused before its body was read
            assert refused(receiver, "busy") == 2
            assert not answers  # nothing acknowledged before it is stored
            block.release()
            for sender in senders:
                sender.join(60)
        assert sorted(map(str, answers)) == ["200", "200", "b''", "b''"]
        # The refused requests, retried: stored.
        assert grpc_export(receiver)(audit_logs(5, start=100).SerializeToString(), timeout=30) == b""
        assert httpx.post(logs, content=audit_logs(5, start=105).SerializeToString(), headers=PROTOBUF).is_success
        assert stored(receiver) == 30
    finally:
        assert receiver.stop() == 0


# --- a 48-way flood through the real collector: nothing lost to refusals ------------------------------------------


@pytest.fixture(scope="module")
def otelcol() -> Path:
    return build_collector()


def test_a_48_way_grpc_flood_through_the_collector_is_stored_exactly_once(otelcol: Path, tmp_path: Path) -> None:
    """48 apps export at once to the collector (the shipped config: 4 senders per pipeline), whose exports meet a
    receiver taking one call at a time: the calls past it are refused with RetryInfo, the collector retries them,
    and every record sent is stored once."""
    url = f"sqlite:///{tmp_path}/audit.db"
    settings = {"max_concurrent_grpc_requests": 1, "retry_after_seconds": 1}
    receiver = Receiver(tmp_path, url, receiver=settings)
    apps, batches, size = 48, 4, 25
    expected: set[str] = set()

    def app(n: int) -> None:
        """Half the apps send audit events, half GenAI spans: both pipelines; every span id distinct."""
        channel = grpc.insecure_channel(collector.grpc_endpoint.removeprefix("http://"))
        for b in range(batches):
            first = (n * batches + b) * size
            if n % 2:
                body = traces([span(i) for i in range(first, first + size)]).SerializeToString()
                channel.unary_unary(TRACES)(body, timeout=30)
            else:
                body = audit_logs(size, start=first).SerializeToString()
                channel.unary_unary(LOGS)(body, timeout=30)
        channel.close()

    for n in range(apps):
        for b in range(batches):
            expected.update(f"{i + 1:016x}" for i in range((n * batches + b) * size, (n * batches + b + 1) * size))
    with contextlib.ExitStack() as stack:
        stack.callback(receiver.stop)
        receiver.start()
        # A receiver on loopback without TLS or ingest tokens (those are tested in test_collector.py).
        env = {"LLMTALLY_OTLP_ENDPOINT": f"127.0.0.1:{receiver.grpc_port}", "LLMTALLY_TLS_INSECURE": "true"}
        collector = Collector(otelcol, tmp_path, [ROOT / "otel-collector-config.yaml"], env)
        stack.callback(collector.stop)
        collector.start()
        with WriterBlock(url):  # the first export waits on the store, so the collector's next ones find no slot
            flood = [threading.Thread(target=app, args=(n,)) for n in range(apps)]
            for thread in flood:
                thread.start()
            wait_for(lambda: refused(receiver, "busy") > 0, 30, collector.tail)
        for thread in flood:
            thread.join(60)
        wait_for(lambda: stored(receiver) >= len(expected), 60, lambda: f"{stored(receiver)} stored")
        assert collector.stop() == 0
        refusals = refused(receiver, "busy")
        with contextlib.closing(open_store(url)) as store:
            ids = [r.record_id for r in store.records_between(0, 2**63 - 1, limit=100_000)]
        log = collector.tail(10_000_000)
    assert len(ids) == len(expected) and set(ids) == expected  # every record once
    assert refusals > 0  # the refusals happened, and were counted
    assert "Dropping data" not in log and "not retryable" not in log.lower()


# --- memory under a flood of maximal bodies -----------------------------------------------------------------------


def test_a_flood_of_maximal_bodies_stays_within_the_documented_memory_bound() -> None:
    """bench/receiver_memory.py, short: 4 s of every kind of maximal body from 6 senders per transport against bodies
    of 1 MiB, 2 + 2 requests in flight and a queue of 20,000 records (the long run is in bench/README.md)."""
    argv = ["--seconds", "4", "--senders", "6", "--max-request-mib", "1", "--grpc-slots", "2", "--http-slots", "2"]
    argv += ["--queue-records", "20000", "--until-answered", "60", "--json"]  # every path taken, even on a busy machine
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "receiver_memory.py"), *argv],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(run.stdout)
    answers, refusals = figures["answers"], figures["refused"]
    assert figures["exit_code"] == 0
    # The flood was one: stored, refused busy (429 / RESOURCE_EXHAUSTED) and too large (413), and counted.
    assert answers.get("protobuf 200", 0) + answers.get("grpc OK", 0) > 0, answers
    assert answers.get("too-large-streamed 413", 0) + answers.get("gzip-bomb 413", 0) > 0, answers
    assert refusals.get("busy", 0) > 0 and refusals.get("too_large", 0) > 0, refusals
    assert figures["rss_peak_mib"] <= figures["bound_mib"], figures
    assert figures["worker_rss_peak_mib"] <= figures["worker_bound_mib"], figures


# --- the settings ---------------------------------------------------------------------------------------------------

LIMIT_KEYS = ("max_request_bytes", "max_concurrent_grpc_requests", "max_concurrent_http_requests")


def test_the_limits_are_documented_with_their_defaults() -> None:
    example, defaults = load(str(ROOT / "llmtally.example.yaml"), env={}), Config()
    assert [getattr(example, key) for key in LIMIT_KEYS] == [getattr(defaults, key) for key in LIMIT_KEYS]
    assert (defaults.max_request_bytes, defaults.max_concurrent_grpc_requests) == (8 * MIB, 8)


@pytest.mark.parametrize("key", LIMIT_KEYS)
@pytest.mark.parametrize("value", [0, -1, "many", 1.5])
def test_a_bad_limit_names_its_key(tmp_path: Path, key: str, value: Any) -> None:
    path = tmp_path / "llmtally.yaml"
    path.write_text(f"receiver:\n  {key}: {value}\n")
    with pytest.raises(ConfigError, match=f"receiver\\.{key}"):
        load(str(path), env={})
