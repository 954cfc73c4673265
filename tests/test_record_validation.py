"""Validation per record, never per request: a value no record can be made of rejects that record (OTLP partial
success, with the reason, counted), whatever its type, size or depth; the good records sent with it are stored; no
input gets a 5xx / UNKNOWN."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from otlp_fuzz import TRANSPORTS, UNEXPECTED, logs, send, traces

from llmtally.exporter.normalise import otlp
from llmtally.exporter.normalise.convert import to_record
from llmtally.exporter.normalise.limits import Invalid, check
from llmtally.exporter.normalise.values import MAX_DEPTH, attributes
from llmtally.exporter.price import Pricer
from llmtally.exporter.receive.prepare import prepare
from llmtally.exporter.store import open_store
from receiver import Receiver, metric_sum

GOOD = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 100,
    "gen_ai.usage.output_tokens": 20,
}


def deep(levels: int, leaf: Any = "x") -> Any:
    for _ in range(levels):
        leaf = [leaf]
    return leaf


# (attributes that replace GOOD's, a piece of the reason the record is rejected with)
REJECTED = [
    ({"gen_ai.usage.input_tokens": "²"}, "gen_ai.usage.input_tokens='²' is not a token count"),
    ({"gen_ai.usage.input_tokens": "٣"}, "gen_ai.usage.input_tokens='٣' is not a token count"),
    ({"gen_ai.usage.output_tokens": "9" * 5000}, "gen_ai.usage.output_tokens='9999"),
    ({"gen_ai.usage.input_tokens": True}, "gen_ai.usage.input_tokens=True is not a token count"),
    ({"gen_ai.usage.input_tokens": float("nan")}, "gen_ai.usage.input_tokens=nan is not a token count"),
    ({"gen_ai.usage.input_tokens": [1, 2]}, "gen_ai.usage.input_tokens=[1, 2] is not a token count"),
    ({"gen_ai.usage.input_tokens": b"12"}, "gen_ai.usage.input_tokens=b'12' is not a token count"),
    ({"gen_ai.operation.name": ["chat"]}, "gen_ai.operation.name=['chat'] is not a string"),
    ({"gen_ai.operation.name": {"name": "chat"}}, "gen_ai.operation.name={'name': 'chat'} is not a string"),
    ({"gen_ai.request.model": b"\x00\xff"}, "gen_ai.request.model=b'\\x00\\xff' is not a string"),
    ({"user.id": deep(40)}, "user.id=[[[...]]] is not a string"),
    ({"llmtally.events": "[" * 1000 + "]" * 1000}, "llmtally.events is not"),
    ({"llmtally.events": '[{"delay": NaN}]'}, "llmtally.events is not JSON"),
    ({"llmtally.events": '[{"delay": 1e999}]'}, "llmtally.events is not JSON"),
    ({"llmtally.events": '{"name": "retry"}'}, "llmtally.events is not a list of events"),
    ({"gen_ai.request.model": "m" * 100_000}, "request_model is 100000 characters long, more than 4096"),
    ({"gen_ai.response.finish_reasons": [{"reason": "stop"}]}, "gen_ai.response.finish_reasons={'reason': 'stop'}"),
]
# (attributes that replace GOOD's, the record's field, its value): kept, the value read as absent or false
KEPT = [
    ({"http.response.status_code": "²"}, "http_status", None),
    ({"http.response.status_code": "9" * 5000}, "http_status", None),
    ({"http.response.status_code": "429"}, "http_status", 429),
    ({"gen_ai.request.stream": "yes please"}, "stream", False),
    ({"gen_ai.input.messages": deep(40, {"role": "user"})}, "input_messages", "[" * 40 + '{"role": "user"}' + "]" * 40),
    ({"gen_ai.usage.input_tokens": " 12 "}, "input_tokens", 12),
    ({"gen_ai.response.finish_reasons": "stop"}, "finish_reasons", ["stop"]),
    ({"llmtally.ratelimit.requests.remaining": float("inf")}, "ratelimits", {}),
]


def from_traces(attrs: dict[str, Any]) -> otlp.Normalised:
    return otlp.from_traces(traces([GOOD, {**GOOD, **attrs}, GOOD], first_id=1))


@pytest.mark.parametrize(("attrs", "reason"), REJECTED, ids=[str(i) for i in range(len(REJECTED))])
def test_a_bad_value_rejects_its_record_with_the_reason(attrs: dict[str, Any], reason: str):
    for found in (from_traces(attrs), otlp.from_logs(logs([GOOD, {**GOOD, **attrs}, GOOD], first_id=1))):
        assert found.rejected == 1 and len(found.records) == 2, found.message
        assert reason in found.message and UNEXPECTED not in found.message, found.message
        assert "0000000000000002: " in found.message  # the record named
        assert len(found.message) < 400  # whatever the value's size


@pytest.mark.parametrize(("attrs", "field", "expected"), KEPT, ids=[str(i) for i in range(len(KEPT))])
def test_a_value_that_only_describes_the_record_is_read_as_absent(attrs: dict[str, Any], field: str, expected: Any):
    found = from_traces(attrs)
    assert found.rejected == 0 and len(found.records) == 3, found.message
    assert getattr(found.records[1], field) == expected


def test_to_record_raises_only_invalid_for_values_past_what_protobuf_carries():
    """Python values no OTLP request can carry (ints past 64 bits, nesting past protobuf's limit): still only
    `Invalid`, with a short reason."""
    for attrs in (
        {"gen_ai.usage.input_tokens": 10**5000},
        {"llmtally.duration": 10**400},
        {"gen_ai.request.model": 10**5000},
        {"gen_ai.input.messages": [10**5000]},
        {"gen_ai.output.messages": deep(5000)},
    ):
        with pytest.raises(Invalid) as caught:
            check(to_record({**GOOD, **attrs}, record_id="r", start_ns=10**18, end_ns=10**18, source="x"))
        assert len(str(caught.value)) < 200, attrs


def nested(key: str, levels: int) -> KeyValue:
    """An attribute of arrays `levels` deep, built in place (protobuf refuses to copy it past its depth)."""
    attribute = KeyValue(key=key)
    node = attribute.value
    for _ in range(levels):
        node = node.array_value.values.add()
    node.string_value = "x"
    return attribute


def test_values_are_read_to_a_bounded_depth():
    """A message built in Python nests as deep as it likes: read to `values.MAX_DEPTH` levels, never past."""
    attrs = attributes([nested("user.id", 500), nested("gen_ai.input.messages", 500)])
    with pytest.raises(Invalid, match=r"user.id=\[\[\[\.\.\.\]\]\] is not a string"):
        to_record({**GOOD, **attrs}, record_id="r", start_ns=1, end_ns=1, source="x")
    del attrs["user.id"]
    record = to_record({**GOOD, **attrs}, record_id="r", start_ns=1, end_ns=1, source="x")
    assert record.input_messages == "[" * MAX_DEPTH + f'"<nested deeper than {MAX_DEPTH} levels>"' + "]" * MAX_DEPTH
    big = to_record(
        {**GOOD, "llmtally.ratelimit.requests.limit": 10**400}, record_id="r", start_ns=1, end_ns=1, source="x"
    )
    assert big.ratelimits == {}  # no rate-limit value: absent


def test_an_audit_event_with_a_span_id_of_another_length_is_rejected_with_a_short_reason():
    request = logs([GOOD, GOOD, GOOD], first_id=1)
    request.resource_logs[0].scope_logs[0].log_records[1].span_id = b"\x01" * 1_000_000
    found = otlp.from_logs(request)
    assert (found.rejected, len(found.records)) == (1, 2)
    assert found.message == "audit event with a span id of 1000000 bytes (8, or none)"


# --- the safety net: a bug rejects one record, never the request --------------------------------------------------


def test_an_unexpected_error_normalising_one_record_rejects_only_it(monkeypatch: pytest.MonkeyPatch):
    real = otlp.to_record

    def flaky(attrs: dict[str, Any], **kwargs: Any) -> Any:
        if kwargs["record_id"].endswith("2"):
            raise ZeroDivisionError("a bug")
        return real(attrs, **kwargs)

    monkeypatch.setattr(otlp, "to_record", flaky)
    for found in (
        otlp.from_traces(traces([GOOD, GOOD, GOOD], first_id=1)),
        otlp.from_logs(logs([GOOD, GOOD, GOOD], first_id=1)),
    ):
        assert (found.rejected, len(found.records)) == (1, 2)
        assert "0000000000000002: could not be read (ZeroDivisionError: 'a bug')" in found.message


class FlakyPricer(Pricer):
    def price(self, record: Any) -> None:
        if record.request_model == "bug-model":
            raise KeyError("missing")
        super().price(record)


def test_an_unexpected_error_pricing_one_record_rejects_only_it():
    request = traces([GOOD, {**GOOD, "gen_ai.request.model": "bug-model"}, GOOD], first_id=1)
    found, _ = prepare("traces", request.SerializeToString(), None, FlakyPricer())
    assert (found.rejected, len(found.records)) == (1, 2)
    assert all(r.priced for r in found.records)
    assert "record 0000000000000002: could not be read (KeyError: " in found.message


def test_an_unexpected_error_outside_the_records_rejects_them_with_the_reason(monkeypatch: pytest.MonkeyPatch):
    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(otlp, "from_traces", broken)
    found, _ = prepare("traces", traces([GOOD, GOOD], first_id=1).SerializeToString(), None, Pricer())
    assert (found.rejected, found.records) == (2, [])
    assert found.message == "the request's records: could not be read (RuntimeError: 'a bug'); (2 rejected in all)"


# --- over the wire: OTLP/gRPC, OTLP/HTTP protobuf and JSON, against a real `llmtally serve` ------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Receiver, str]]:
    workdir = tmp_path_factory.mktemp("validation")
    store = f"sqlite:///{workdir}/audit.db"
    receiver = Receiver(workdir, store).start()
    try:
        yield receiver, store
    finally:
        assert receiver.stop() == 0


@pytest.mark.parametrize("signal", ["spans", "log_records"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_bad_values_over_the_wire_reject_their_records_and_the_rest_is_stored(
    served: tuple[Receiver, str], transport: str, signal: str
):
    receiver, store_url = served
    base = (TRANSPORTS.index(transport) * 2 + (signal == "spans")) * 10_000  # span ids of this test's own
    rejected_before = metric_sum(receiver.metrics(), "llmtally_receiver_rejected_total", signal=signal)
    build = traces if signal == "spans" else logs
    for n, (attrs, reason) in enumerate(REJECTED):
        first = base + 10 * n + 1
        answer = send(receiver, transport, build([GOOD, {**GOOD, **attrs}, GOOD], first))
        assert answer.ok, (reason, answer.failure)
        assert answer.rejected == 1 and reason in answer.message, (reason, answer.message)
        assert f"{first + 1:016x}: " in answer.message
    kept = send(receiver, transport, build([{**GOOD, **attrs} for attrs, _, _ in KEPT], base + 5_000))
    assert kept.ok and kept.rejected == 0, kept
    exposition = receiver.metrics()
    rejected = metric_sum(exposition, "llmtally_receiver_rejected_total", signal=signal) - rejected_before
    assert rejected == len(REJECTED)
    store = open_store(store_url)
    try:
        ids = {r.record_id for r in store.records_between(0, 2**62, limit=100_000)}
    finally:
        store.close()
    for n in range(len(REJECTED)):
        first = base + 10 * n + 1
        assert {f"{first:016x}", f"{first + 2:016x}"} <= ids  # the good records of each request, stored
        assert f"{first + 1:016x}" not in ids
    assert {f"{base + 5_000 + n:016x}" for n in range(len(KEPT))} <= ids
