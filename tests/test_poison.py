"""Poison records: rejected for good (OTLP partial success, counted), never retried forever, and never sinking the
good records of the same request or of the other batches written in the same group commit."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.common._internal import _encode_key_value
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from psycopg import errors as pgerrors

from llmtally.exporter.metrics import Metrics
from llmtally.exporter.normalise import Record
from llmtally.exporter.normalise.limits import LATEST_NS, MAX_COST_NUSD, MAX_TOKENS
from llmtally.exporter.pipeline import Pipeline, Written
from llmtally.exporter.store import RecordRejected, open_store
from llmtally.exporter.store.postgres import store_error as postgres_store_error
from llmtally.exporter.store.sql import SQLStore
from llmtally.exporter.store.sqlite import store_error as sqlite_store_error
from receiver import Receiver, metric_sum

HOUR0_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z: every span of a test in one hour and one day
EVERYTHING = (0, LATEST_NS)  # whole days: the usage query reads the daily rollup
PROTOBUF = {"content-type": "application/x-protobuf"}
EXPENSIVE = {  # priced at 1e18 nano-USD each (the per-record bound): ten of them overflow one rollup sum
    "gen_ai.request.model": "poison-model",
    "gen_ai.response.model": "poison-model",
    "gen_ai.usage.input_tokens": MAX_TOKENS,
    "gen_ai.usage.output_tokens": 0,
    "user.id": "big-spender",  # one rollup key for all of them
}
POISON_PRICING = {"overrides": [{"model": "poison-model", "input_per_mtok": 1000, "output_per_mtok": 1000}]}


# --- OTLP helpers -------------------------------------------------------------------------------------------------


def span(i: int, start_ns: int | None = None, **overrides: Any) -> Span:
    """GenAI client span number i (span id i + 1); `overrides` replace or add attributes (dots as `__`)."""
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 100 + i,
        "gen_ai.usage.output_tokens": 20,
        "user.id": f"user-{i % 3}",
    }
    attrs.update({k.replace("__", "."): v for k, v in overrides.items()})
    start = HOUR0_NS + 60 * 10**9 + i * 1000 if start_ns is None else start_ns
    return Span(
        trace_id=(i + 1).to_bytes(16, "big"),
        span_id=(i + 1).to_bytes(8, "big"),
        name="chat",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start,
        end_time_unix_nano=start + 10**9,
        attributes=[_encode_key_value(k, v) for k, v in attrs.items()],
    )


def traces(spans: list[Span]) -> ExportTraceServiceRequest:
    scope = ScopeSpans(spans=spans)
    scope.scope.name = "llmtally"
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[scope])])


def export(receiver: Receiver, transport: str, request: ExportTraceServiceRequest) -> ExportTraceServiceResponse:
    """Sends over real OTLP/gRPC or OTLP/HTTP (protobuf); fails unless the answer is a success (200 / OK)."""
    if transport == "grpc":
        with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
            return trace_grpc.TraceServiceStub(channel).Export(request, timeout=60)  # type: ignore[no-untyped-call]
    answer = httpx.post(
        f"{receiver.http_url}/v1/traces", content=request.SerializeToString(), headers=PROTOBUF, timeout=60
    )
    assert answer.status_code == 200, (answer.status_code, answer.content)
    return ExportTraceServiceResponse.FromString(answer.content)


def check_store(url: str, expected: int) -> list[Record]:
    """The store holds `expected` records, and its rollups are exactly the sums of the records."""
    store = open_store(url)
    try:
        records = store.records_between(*EVERYTHING, limit=100_000)
        (totals,) = store.usage([], *EVERYTHING)
    finally:
        store.close()
    assert len(records) == expected
    assert totals["requests"] == expected
    for name in ("input_tokens", "output_tokens", "total_tokens", "provider_cost_nusd", "customer_cost_nusd"):
        assert totals[name] == sum(getattr(r, name) or 0 for r in records), name
    return records


# --- values caught at normalise, over gRPC and HTTP ---------------------------------------------------------------

POISON_AT_NORMALISE = [  # (attribute overrides or a start time, a piece of the reason)
    ({"gen_ai__usage__input_tokens": 10**17}, "input_tokens=100000000000000000 is not a token count"),
    ({"gen_ai__usage__output_tokens": -5}, "output_tokens=-5 is not a token count"),
    ({"start_ns": 10_500_000_000 * 10**9}, "times must be between 1970-01-01 and 2200-01-01"),
    ({"gen_ai__response__time_to_first_chunk": float("inf")}, "gen_ai.response.time_to_first_chunk=inf"),
    ({"user__id": "u" * 5000}, "user_id is 5000 characters long, more than 4096"),
    ({"llmtally__duration": float("nan")}, "llmtally.duration=nan"),
]


@pytest.mark.parametrize("transport", ["grpc", "http/protobuf"])
def test_values_no_record_may_hold_are_rejected_and_the_rest_stored(tmp_path: Path, store_url: str, transport: str):
    spans, poison_ids = [], []
    for n, (overrides, _) in enumerate(POISON_AT_NORMALISE):
        spans += [span(2 * n), span(2 * n + 1, **overrides)]  # good, poison, good, poison...
        poison_ids.append((2 * n + 2).to_bytes(8, "big").hex())
    good = len(spans) - len(POISON_AT_NORMALISE)
    receiver = Receiver(tmp_path, store_url).start()
    try:
        for attempt in (1, 2):  # the second time: the client sent the same request again
            answer = export(receiver, transport, traces(spans))
            assert answer.partial_success.rejected_spans == len(POISON_AT_NORMALISE)
            message = answer.partial_success.error_message
            for (_, reason), span_id in list(zip(POISON_AT_NORMALISE, poison_ids, strict=True))[:5]:
                assert f"span {span_id}: " in message and reason in message, (reason, message)
            assert message.endswith(f"({len(POISON_AT_NORMALISE)} rejected in all)")
            exposition = receiver.metrics()
            rejected = metric_sum(exposition, "llmtally_receiver_rejected_total", signal="spans")
            assert rejected == attempt * len(POISON_AT_NORMALISE)
            assert metric_sum(exposition, "llmtally_receiver_accepted_total", signal="spans") == attempt * good
            assert metric_sum(exposition, "completion_requests_total") == good  # stored once
            assert metric_sum(exposition, "llmtally_receiver_refused_requests_total") == 0
    finally:
        assert receiver.stop() == 0
    records = check_store(store_url, good)
    assert {r.record_id for r in records}.isdisjoint(poison_ids)


# --- a value only the store refuses, in one group commit with other batches ---------------------------------------


class WriterBlock:
    """Holds the store's write lock from another connection (reads go on), so that batches queue up behind the
    writer."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self._sqlite: sqlite3.Connection | None = None
        self._pg: psycopg.Connection[Any] | None = None

    def __enter__(self) -> WriterBlock:
        if self.store_url.startswith("sqlite:///"):
            self._sqlite = sqlite3.connect(self.store_url[len("sqlite:///") :], timeout=30)
            self._sqlite.execute("BEGIN EXCLUSIVE")
        else:
            self._pg = psycopg.connect(self.store_url)
            self._pg.execute("LOCK TABLE completion_records IN EXCLUSIVE MODE")
        return self

    def release(self) -> None:
        for conn in (self._sqlite, self._pg):
            if conn is not None:
                conn.rollback()
                conn.close()
        self._sqlite = self._pg = None

    def __exit__(self, *exc: object) -> None:
        self.release()


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_store_refusal_rejects_only_the_poison_of_a_group_commit(tmp_path: Path, store_url: str):
    # Five requests over both transports; the third also holds ten spans whose costs (1e18 nano-USD each, within
    # the per-record bound) overflow their rollup sum together: the store takes nine, never the tenth.
    requests = [[span(i) for i in range(5 * n, 5 * n + 5)] for n in range(5)]
    requests[2] += [span(100 + i, **{k.replace(".", "__"): v for k, v in EXPENSIVE.items()}) for i in range(10)]
    transports = ["http/protobuf", "grpc"] * 3
    good = sum(len(r) for r in requests) - 1
    receiver = Receiver(tmp_path, store_url, pricing=POISON_PRICING).start()
    try:
        answers: dict[int, ExportTraceServiceResponse] = {}

        def send(n: int) -> None:
            answers[n] = export(receiver, transports[n], traces(requests[n]))

        writes_before = metric_sum(receiver.metrics(), "llmtally_receiver_write_latency_seconds_count")
        with WriterBlock(store_url) as block:
            senders = [threading.Thread(target=send, args=(0,))]
            senders[0].start()
            _wait_for(lambda: metric_sum(receiver.metrics(), "llmtally_receiver_queue_depth") == 5, "the first batch")
            time.sleep(0.2)  # the writer has it and waits for the lock
            senders += [threading.Thread(target=send, args=(n,)) for n in range(1, 5)]
            for sender in senders[1:]:
                sender.start()
            queued = sum(len(r) for r in requests)
            _wait_for(lambda: metric_sum(receiver.metrics(), "llmtally_receiver_queue_depth") == queued, "the rest")
            assert not answers  # nothing is acknowledged before it is stored
            block.release()
            for sender in senders:
                sender.join(60)
        exposition = receiver.metrics()
        # The four queued batches went in one group (one write for them, one for the first batch).
        assert metric_sum(exposition, "llmtally_receiver_write_latency_seconds_count") - writes_before == 2
        first_answers = {n: answers[n].SerializeToString() for n in range(5)}
        assert [answers[n].partial_success.rejected_spans for n in range(5)] == [0, 0, 1, 0, 0]
        message = answers[2].partial_success.error_message
        assert "out of " in message and "range" in message, message
        assert metric_sum(exposition, "llmtally_receiver_rejected_total", signal="spans") == 1
        assert metric_sum(exposition, "completion_requests_total") == good
        assert metric_sum(exposition, "llmtally_receiver_refused_requests_total") == 0
        # The same requests again: the same answers (the tenth is still refused), nothing counted twice.
        answers.clear()
        for n in range(5):
            send(n)
        assert {n: answers[n].partial_success.rejected_spans for n in range(5)} == {0: 0, 1: 0, 2: 1, 3: 0, 4: 0}
        assert {n: answers[n].SerializeToString() for n in (0, 1, 3, 4)} == {n: first_answers[n] for n in (0, 1, 3, 4)}
        assert answers[2].partial_success.error_message.split(": ", 1)[1].startswith(message.split(": ", 1)[1][:20])
        exposition = receiver.metrics()
        assert metric_sum(exposition, "completion_requests_total") == good
        assert metric_sum(exposition, "llmtally_receiver_rejected_total", signal="spans") == 2
        assert metric_sum(exposition, "llmtally_receiver_duplicate_records_total") == good
    finally:
        assert receiver.stop() == 0
    records = check_store(store_url, good)
    expensive = [r for r in records if r.request_model == "poison-model"]
    assert len(expensive) == 9 and all(r.provider_cost_nusd == MAX_COST_NUSD for r in expensive)


# --- the writer's isolation, with records made past validation ---------------------------------------------------


def record(i: int, **fields: Any) -> Record:
    start = HOUR0_NS + i * 10**6
    values: dict[str, Any] = {
        "record_id": f"{i:016x}",
        "start_time_ns": start,
        "end_time_ns": start + 10**9,
        "provider": "openai",
        "operation": "chat",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini",
        "duration_s": 1.0,
        "input_tokens": 10 + i,
        "output_tokens": 5,
        "total_tokens": 15 + i,
        "provider_cost_nusd": 1000 + i,
        "customer_cost_nusd": 1000 + i,
        "priced": True,
        **fields,
    }
    return Record(**values)


def test_writer_isolates_what_the_store_refuses_in_a_group(store_url: str):
    huge = 5 * 10**18  # each fits a BIGINT, two do not: the second is refused by the rollup
    batches = [
        [record(0), record(1)],
        [record(2), record(90, input_tokens=10**19), record(3)],  # past BIGINT in the record itself
        [record(91, provider_cost_nusd=huge), record(4), record(92, customer_cost_nusd=2**63)],
        [record(93, provider_cost_nusd=huge), record(5)],
    ]
    refused = {1: ["000000000000005a"], 2: ["000000000000005c"], 3: ["000000000000005d"]}
    store = open_store(store_url)
    try:
        for attempt in (1, 2):
            pipeline = Pipeline(store, Metrics())
            futures = [pipeline.submit(batch) for batch in batches]  # queued before the writer starts: one group
            pipeline.start()
            results: list[Written] = [f.result(timeout=60) for f in futures]
            pipeline.close()
            for n, result in enumerate(results):
                assert [record_id for record_id, _ in result.rejected] == refused.get(n, []), (n, result)
                for record_id, why in result.rejected:
                    assert why.startswith(f"record {record_id}: ")
            new = [result.new for result in results]
            assert new == ([2, 2, 2, 1] if attempt == 1 else [0, 0, 0, 0])
        assert "range" in results[3].rejected[0][1] or "overflow" in results[3].rejected[0][1]
    finally:
        store.close()
    records = check_store(store_url, 7)
    assert sorted(int(r.record_id, 16) for r in records) == [0, 1, 2, 3, 4, 5, 91]


def test_store_write_refuses_a_batch_with_nothing_stored(store: SQLStore):
    with pytest.raises(RecordRejected):
        store.write([record(1), record(2, input_tokens=2**63)])
    with pytest.raises(RecordRejected):
        store.write([record(1), record(3, provider_cost_nusd=-(2**63) - 1)])
    assert store.count() == 0
    assert store.write([record(1)]) == [record(1)]


@pytest.mark.parametrize(
    "error",
    [pgerrors.NumericValueOutOfRange, pgerrors.NotNullViolation, pgerrors.CharacterNotInRepertoire, psycopg.DataError],
)
def test_postgres_value_errors_are_permanent(error: type[psycopg.Error]):
    assert type(postgres_store_error(error("x"))) is RecordRejected


def test_sqlite_value_errors_are_permanent():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x INTEGER NOT NULL)")
    with pytest.raises(sqlite3.IntegrityError) as raised:
        conn.execute("INSERT INTO t VALUES (NULL)")
    assert type(sqlite_store_error(raised.value)) is RecordRejected
