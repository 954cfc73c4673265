"""One record per LLM call (`store/calls.py`): layers of one call written in separate batches, in any order, by one
or two writers at once, on SQLite and PostgreSQL; the rollups and `/metrics` count each call once.

The layers are those the instrumentations send: llmtally's audit event and span (one id), a peer's span wrapping or
beside it (its own id), with or without a response id.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from test_store_queries import assert_rollups

from llmtally.exporter.metrics import Metrics
from llmtally.exporter.normalise.record import Record
from llmtally.exporter.store import Store, open_store
from llmtally.exporter.store.sql import SQLStore
from receiver import Receiver, metric_sum

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
MS = 1_000_000
S = 1_000 * MS
DAY = 86_400 * S
ALL_TIME = (0, 2**63 - 1)


def layer(record_id: str, source: str, *, start: int, end: int | None = None, **fields: Any) -> Record:
    """One instrumentation's record of a chat call: 100 input and 20 output tokens unless failed."""
    failed = fields.get("status") == "error"
    values: dict[str, Any] = {
        "record_id": record_id,
        "span_id": record_id,
        "trace_id": "t-" + record_id,
        "start_time_ns": start,
        "end_time_ns": end if end is not None else start + 800 * MS,
        "provider": "openai",
        "operation": "chat",
        "request_model": "gpt-4o-mini",
        "service": "app",
        "source": source,
        "usage_source": "none" if failed else "provider",
        "input_tokens": 0 if failed else 100,
        "output_tokens": 0 if failed else 20,
        "total_tokens": 0 if failed else 120,
        "error_type": "rate_limit" if failed else None,
    }
    return Record(**(values | fields))


def call(n: int, *, failed: bool = False, start: int | None = None) -> tuple[Record, Record, Record]:
    """Call `n` as a peer's span wrapping llmtally's, and llmtally's audit event (same id as its span, no parent)."""
    start = T0 + n * 3 * S if start is None else start
    trace = f"trace-{n:04d}"
    ids = {} if failed else {"response_id": f"chatcmpl-{n:04d}"}
    error = {"status": "error"} if failed else {}
    peer = layer(f"p{n:015x}", "otel-genai", start=start, end=start + 900 * MS, trace_id=trace, **ids, **error)
    mine = {"user_id": "alice", "feature": "search", "request_id": f"req_{n:04d}", **ids, **error}
    event = layer(f"l{n:015x}", "llmtally", start=start + MS, end=start + 880 * MS, trace_id=trace, **mine)
    span = Record(**{**vars_of(event), "parent_span_id": peer.record_id})
    return peer, event, span


def vars_of(record: Record) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def stored(store: Store) -> list[Record]:
    return store.records_between(*ALL_TIME, limit=100_000)


def check_rollups(store: Store) -> None:
    assert isinstance(store, SQLStore)
    assert_rollups(store, stored(store), T0 - DAY, T0 + 30 * DAY)


@pytest.mark.parametrize("failed", [False, True], ids=["answered", "failed"])
def test_every_arrival_order_of_the_layers_stores_the_llmtally_record_once(store: Store, failed: bool):
    """Each of the six orders of (peer span, llmtally's audit event, llmtally's span), one batch each."""
    kept = []
    for n, order in enumerate(itertools.permutations(range(3))):
        layers = call(n, failed=failed)
        replaced = []
        for i in order:
            written = store.write([layers[i]])
            replaced += written.replaced
        (record,) = [r for r in stored(store) if r.trace_id == layers[0].trace_id]
        assert record.record_id == layers[1].record_id and record.source == "llmtally"
        assert record.seen_by == ["llmtally", "otel-genai"]
        assert record.user_id == "alice"
        # The peer's record stored first is replaced by llmtally's, once.
        assert [(old.record_id, new.record_id) for old, new in replaced] == (
            [(layers[0].record_id, layers[1].record_id)] if order[0] == 0 else []
        )
        kept.append(record)
    assert store.count() == 6
    check_rollups(store)
    (totals,) = store.usage([], *ALL_TIME)
    assert totals["requests"] == 6 and totals["errors"] == (6 if failed else 0)
    assert totals["input_tokens"] == sum(r.input_tokens for r in kept) == (0 if failed else 600)
    users = store.usage(["user_id"], *ALL_TIME)
    assert [(u["user_id"], u["requests"]) for u in users] == [("alice", 6)]  # no row left for the peer's ''


def test_one_batch_holding_every_layer_stores_one_record(store: Store):
    layers = [r for n in range(50) for r in call(n, failed=n % 5 == 0)]
    written = store.write(layers)
    assert len(written) == 50 and {r.source for r in written} == {"llmtally"}
    assert store.write(layers) == []  # a retried export
    assert store.count() == 50
    check_rollups(store)


def test_a_layer_sent_again_after_its_call_was_kept_is_recognised(store: Store):
    peer, event, _ = call(1)
    store.write([event])
    store.write([peer])  # absorbed into llmtally's record
    assert store.write([peer]) == [] and store.write([event]) == []
    assert store.count() == 1
    assert store.get(peer.record_id) is None and store.get(event.record_id) is not None
    check_rollups(store)


def test_failed_calls_in_different_traces_are_paired_by_time_and_model(store: Store):
    """OpenLLMetry's Anthropic spans start no trace of their own around the call: the layers of a failed call share
    nothing but the time, the service and the model."""
    start = T0 + 10 * S
    peer = layer("p1", "openllmetry", start=start, end=start + 500 * MS, status="error", trace_id="a")
    mine = layer("l1", "llmtally", start=start + 2 * MS, end=start + 490 * MS, status="error", trace_id="b")
    later = layer("p2", "openllmetry", start=start + 5 * S, status="error", trace_id="c")  # another call
    other_model = layer("p3", "openllmetry", start=start, status="error", request_model="gpt-4.1", trace_id="d")
    other_service = layer("p4", "openllmetry", start=start, status="error", service="batch-job", trace_id="e")
    for r in (mine, peer, later, other_model, other_service):
        store.write([r])
    assert sorted(r.record_id for r in stored(store)) == ["l1", "p2", "p3", "p4"]
    check_rollups(store)


def test_parentage_joins_layers_that_time_does_not(store: Store):
    """A peer span that started 3 s before llmtally's (outside the time window), its child: one call."""
    start = T0 + 20 * S
    peer = layer("p1", "otel-genai", start=start, end=start + 10 * S, status="error", trace_id="t")
    mine = layer("l1", "llmtally", start=start + 3 * S, status="error", trace_id="t", parent_span_id="p1")
    store.write([peer])
    store.write([mine])
    (record,) = stored(store)
    assert record.record_id == "l1" and record.seen_by == ["llmtally", "otel-genai"]
    check_rollups(store)


def test_calls_stored_apart_merge_when_later_evidence_links_them(store: Store):
    """llmtally's audit event (no parent) and a peer span 3 s apart are two calls until llmtally's span names the
    peer's as its parent: then one, in the store and the rollups."""
    start = T0 + 30 * S
    peer = layer("p1", "otel-genai", start=start, end=start + 10 * S, status="error", trace_id="t")
    event = layer("l1", "llmtally", start=start + 3 * S, status="error", trace_id="t")
    span = Record(**{**vars_of(event), "parent_span_id": "p1"})
    store.write([peer])
    store.write([event])
    assert store.count() == 2
    written = store.write([span])
    assert written == [] and written.replaced == []  # two calls became one: nothing to add
    (record,) = stored(store)
    assert record.record_id == "l1" and record.seen_by == ["llmtally", "otel-genai"]
    check_rollups(store)


def test_what_the_evidence_cannot_tell_apart_stays_apart(store: Store):
    """Two llmtally records are two calls even with one response id (a server that reuses ids); two identical
    failed calls at once in one trace, each seen by two instrumentations, are two calls (which layers pair up is
    not known)."""
    start = T0 + 40 * S
    a = layer("l1", "llmtally", start=start, response_id="chatcmpl-123")
    b = layer("l2", "llmtally", start=start + 10 * MS, response_id="chatcmpl-123")
    store.write([a])
    store.write([b])
    same = {"status": "error", "trace_id": "t2"}
    twins = [
        layer("p3", "otel-genai", start=start + S, **same),
        layer("p4", "otel-genai", start=start + S + MS, **same),
        layer("l3", "llmtally", start=start + S + 2 * MS, **same),
        layer("l4", "llmtally", start=start + S + 3 * MS, **same),
    ]
    for r in twins:
        store.write([r])
    records = stored(store)
    assert sorted(r.record_id for r in records) == ["l1", "l2", "l3", "l4"]
    assert all(r.seen_by == ["llmtally", "otel-genai"] for r in records if r.record_id in ("l3", "l4"))
    check_rollups(store)


def test_two_writers_with_the_two_layers_of_each_call_store_each_call_once(opener: Callable[[], SQLStore]):
    """Two stores (two receivers) at once, one with the peers' spans, one with llmtally's audit events and spans,
    in batches of 100, many of them failed calls (no response id)."""
    calls = [call(n, failed=n % 3 == 0, start=T0 + n * 50 * MS) for n in range(1500)]
    first = [c[0] for c in calls]
    second = [r for c in calls for r in (c[1], c[2])]
    errors: list[BaseException] = []
    replaced: list[tuple[Record, Record]] = []
    new: list[Record] = []

    def writer(records: Sequence[Record]) -> None:
        try:
            store = opener()
            for i in range(0, len(records), 100):
                written = store.write(records[i : i + 100])
                new.extend(written)
                replaced.extend(written.replaced)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(part,)) for part in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = opener()
    records = stored(store)
    assert len(records) == len(new) == 1500
    assert {r.source for r in records} == {"llmtally"}
    assert all(r.seen_by == ["llmtally", "otel-genai"] for r in records)
    assert len({r.trace_id for r in records}) == 1500
    check_rollups(store)


def test_metrics_count_a_replaced_record_once_and_take_what_can_be_shown():
    metrics = Metrics().records
    peer = layer("p1", "otel-genai", start=T0, input_tokens=90, total_tokens=110)
    richer = layer("l1", "llmtally", start=T0)  # 100 input tokens: the same labels, more tokens
    metrics.observe([peer])
    metrics.replace([(peer, richer)])
    assert sample(metrics, "completion_requests_total") == 1
    assert sample(metrics, "completion_tokens_prompt_total") == 100
    # Other labels (llmtally's feature), or fewer tokens: the counters keep the first record's values.
    metrics.replace([(richer, layer("l2", "llmtally", start=T0, feature="search", input_tokens=500))])
    metrics.replace([(richer, layer("l3", "llmtally", start=T0, input_tokens=7))])
    assert sample(metrics, "completion_requests_total") == 1
    assert sample(metrics, "completion_tokens_prompt_total") == 100
    assert sample(metrics, "completion_duration_seconds_count") == 1


def sample(metrics: Any, name: str) -> float:
    return sum(s.value for family in metrics.collect() for s in family.samples if s.name == name)


# --- two replicas on one PostgreSQL --------------------------------------------------------------------------------


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _attributes(n: int, failed: bool) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
    }
    if failed:
        return attrs | {"error.type": "rate_limit"}
    return attrs | {
        "gen_ai.response.id": f"chatcmpl-{n:05d}",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 1000 + n,
        "gen_ai.usage.output_tokens": 10,
    }


def otlp_calls(count: int, batch: int) -> tuple[list[bytes], list[bytes]]:
    """The calls as two instrumentations export them: llmtally's audit events (logs) and the official GenAI
    instrumentation's spans wrapping llmtally's (traces), `batch` per export request; every third call failed."""
    resource = Resource(attributes=[_kv("service.name", "two-replicas")])
    logs, traces = [], []
    now = T0 + 400 * DAY
    for first in range(0, count, batch):
        events, spans = [], []
        for n in range(first, min(first + batch, count)):
            failed = n % 3 == 0
            trace, start = os.urandom(16), now + n * 20 * MS
            llmtally_span, peer_span = (2 * n + 1).to_bytes(8, "big"), (2 * n + 2).to_bytes(8, "big")
            mine = _attributes(n, failed) | {"llmtally.duration": 0.5, "user.id": f"user-{n % 7}"}
            if not failed:
                mine["llmtally.usage.source"] = "provider"
            events.append(
                LogRecord(
                    time_unix_nano=start + 505 * MS,
                    event_name="llmtally.completion",
                    trace_id=trace,
                    span_id=llmtally_span,
                    attributes=[_kv(k, v) for k, v in mine.items()],
                )
            )
            spans.append(
                Span(
                    trace_id=trace,
                    span_id=peer_span,
                    name="chat gpt-4o-mini",
                    kind=Span.SPAN_KIND_CLIENT,
                    start_time_unix_nano=start,
                    end_time_unix_nano=start + 510 * MS,
                    attributes=[_kv(k, v) for k, v in _attributes(n, failed).items()],
                    status=Status(code=Status.STATUS_CODE_ERROR if failed else Status.STATUS_CODE_UNSET),
                )
            )
        ours = ScopeLogs(log_records=events)
        ours.scope.name = "llmtally"
        logs.append(
            ExportLogsServiceRequest(
                resource_logs=[ResourceLogs(resource=resource, scope_logs=[ours])]
            ).SerializeToString()
        )
        scope = ScopeSpans(spans=spans)
        scope.scope.name = "opentelemetry.instrumentation.genai.openai"
        traces.append(
            ExportTraceServiceRequest(
                resource_spans=[ResourceSpans(resource=resource, scope_spans=[scope])]
            ).SerializeToString()
        )
    return logs, traces


def test_two_replicas_receiving_the_two_layers_at_once_count_each_call_once(tmp_path, pg_server):
    dsn = pg_server.create_database()
    replicas = [Receiver(tmp_path, dsn, receiver={"workers": 0}).start() for _ in range(2)]
    count = 3000
    logs, traces = otlp_calls(count, batch=50)
    errors: list[BaseException] = []
    together = threading.Barrier(2, timeout=60)  # each export request's two layers sent at the same moment

    def send(replica: Receiver, path: str, bodies: list[bytes]) -> None:
        try:
            with httpx.Client(timeout=60) as client:
                for body in bodies:
                    together.wait()
                    answer = client.post(
                        f"{replica.http_url}{path}", content=body, headers={"content-type": "application/x-protobuf"}
                    )
                    assert answer.status_code == 200, answer.text
        except BaseException as e:
            errors.append(e)
            together.abort()

    try:
        threads = [
            threading.Thread(target=send, args=(replicas[0], "/v1/logs", logs)),
            threading.Thread(target=send, args=(replicas[1], "/v1/traces", traces)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        expositions = [r.metrics() for r in replicas]
    finally:
        codes = [r.stop() for r in replicas]
    assert codes == [0, 0]
    with open_store(dsn) as store:
        records = store.records_between(*ALL_TIME, limit=10_000)
        assert len(records) == count
        assert {r.source for r in records} == {"llmtally"}
        assert all(r.seen_by == ["llmtally", "otel-genai"] for r in records)
        assert isinstance(store, SQLStore)
        assert_rollups(store, records, T0 + 399 * DAY, T0 + 402 * DAY)
        (totals,) = store.usage([], *ALL_TIME)
    assert totals["requests"] == count and totals["errors"] == count // 3
    # Each call counted once over both replicas, whichever stored it first; its tokens as the kept record's.
    assert sum(metric_sum(e, "completion_requests_total") for e in expositions) == count
    assert sum(metric_sum(e, "completion_requests_error_total") for e in expositions) == count // 3
    assert sum(metric_sum(e, "completion_tokens_prompt_total") for e in expositions) == totals["input_tokens"]
    pg_server.drop_database(dsn)
