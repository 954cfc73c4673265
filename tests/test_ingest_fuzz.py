"""Fuzzing ingest with adversarial attribute values (`otlp_fuzz`): no input ever sinks a request (5xx / UNKNOWN), every
record is stored or rejected, and every rejection says why (never the "could not be read" of an unexpected error).

A few thousand attribute sets in process and a few hundred requests over OTLP/gRPC, OTLP/HTTP protobuf and JSON run
by default (seconds); `-m slow` runs 20,000 and 3,000 of them."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from otlp_fuzz import TRANSPORTS, UNEXPECTED, around, attribute_set, logs, send, traces

from llmtally.exporter.normalise.convert import to_record
from llmtally.exporter.normalise.limits import Invalid, check, check_costs
from llmtally.exporter.price import Pricer
from llmtally.exporter.receive.prepare import prepare
from receiver import Receiver, metric_sum


def in_process(seed: int, sets: int) -> None:
    """`sets` attribute sets, in requests of one to five, through `prepare` (parse, normalise, price, check)."""
    rng = random.Random(seed)
    pricer = Pricer()
    done = 0
    while done < sets:
        items = [attribute_set(rng) for _ in range(rng.randrange(1, 6))]
        kind = rng.choice(("logs", "traces"))
        request = around(rng, (logs if kind == "logs" else traces)(items, first_id=done + 1))
        found, _ = prepare(kind, request.SerializeToString(), None, pricer)
        context = (seed, done, items, found.message)
        assert UNEXPECTED not in found.message, context
        assert bool(found.rejected) == bool(found.message), context
        if kind == "logs":  # every audit event is a record or a rejection
            assert len(found.records) + found.rejected == len(items), context
        else:  # spans that are no LLM call are left out
            assert len(found.records) + found.rejected <= len(items), context
        for record in found.records:
            check(record)
            check_costs(record)
        done += len(items)


def python_values(seed: int, sets: int) -> None:
    """`to_record` on attribute sets with values no OTLP request carries too (64-bit overflows, deep nesting):
    a record, or `Invalid` with a short reason, and nothing else."""
    rng = random.Random(seed)
    extremes: tuple[Any, ...] = (10**5000, -(10**400), 2**64, [10**5000], _nest(3000), {"k": _nest(900)})
    for n in range(sets):
        attrs = attribute_set(rng)
        if rng.random() < 0.3:
            attrs[rng.choice(list(attrs))] = rng.choice(extremes)
        try:
            check(to_record(attrs, record_id=f"{n:016x}", start_ns=10**18, end_ns=10**18 + 1, source="fuzz"))
        except Invalid as error:
            assert len(str(error)) < 300, (seed, n, str(error)[:1000])


def _nest(levels: int) -> Any:
    node: Any = "x"
    for _ in range(levels):
        node = [node]
    return node


def over_the_wire(receiver: Receiver, seed: int, requests: int, first_id: int) -> None:
    """`requests` export requests of one to four attribute sets, each over one of the transports, as logs or spans:
    every one answered 200 / OK, and the rejected counted."""
    rng = random.Random(seed)
    before = receiver.metrics()
    sent = {"log_records": 0, "spans": 0}
    rejected = {"log_records": 0, "spans": 0}
    next_id = first_id
    for n in range(requests):
        items = [attribute_set(rng) for _ in range(rng.randrange(1, 5))]
        signal = rng.choice(("log_records", "spans"))
        transport = TRANSPORTS[n % len(TRANSPORTS)]
        request = around(rng, (logs if signal == "log_records" else traces)(items, first_id=next_id))
        next_id += len(items)
        answer = send(receiver, transport, request)
        context = (seed, n, transport, items, answer)
        assert answer.ok, context
        assert UNEXPECTED not in answer.message, context
        assert bool(answer.rejected) == bool(answer.message), context
        sent[signal] += len(items)
        rejected[signal] += answer.rejected
    after = receiver.metrics()

    def counted(name: str, signal: str) -> float:
        return metric_sum(after, name, signal=signal) - metric_sum(before, name, signal=signal)

    for signal in sent:
        assert counted("llmtally_receiver_rejected_total", signal) == rejected[signal]
    assert counted("llmtally_receiver_accepted_total", "log_records") == sent["log_records"] - rejected["log_records"]


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    workdir = tmp_path_factory.mktemp("fuzz")
    served = Receiver(workdir, f"sqlite:///{workdir}/audit.db").start()
    try:
        yield served
    finally:
        assert served.stop() == 0


def test_fuzzed_attributes_in_process():
    in_process(seed=20260101, sets=3_000)


def test_fuzzed_python_values_raise_only_invalid():
    python_values(seed=20260102, sets=2_000)


def test_fuzzed_requests_over_grpc_http_protobuf_and_json(receiver: Receiver):
    over_the_wire(receiver, seed=20260103, requests=300, first_id=1)


@pytest.mark.slow
def test_long_fuzz_in_process():
    in_process(seed=random.randrange(2**32), sets=20_000)
    python_values(seed=random.randrange(2**32), sets=20_000)


@pytest.mark.slow
def test_long_fuzz_over_the_wire(receiver: Receiver):
    over_the_wire(receiver, seed=random.randrange(2**32), requests=3_000, first_id=10**9)
