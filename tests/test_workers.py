"""The receiver's worker processes: the same records as in-process preparation, malformed bytes refused, a worker
that dies loses and doubles nothing."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from llmtally.exporter.price import Pricer, PricingConfig
from llmtally.exporter.receive.decode import Malformed
from llmtally.exporter.receive.prepare import prepare
from llmtally.exporter.receive.workers import Workers
from receiver import Receiver, metric_sum
from test_receiver import audit_logs, stored

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture(scope="module")
def workers():
    pool = Workers(1, {"markup": "0.25"})
    yield pool
    pool.close()


def test_workers_prepare_what_the_receiving_thread_would(workers):
    body = audit_logs(20, model="gpt-4o").SerializeToString()
    sent = workers.prepare("logs", body, "10.0.0.7")
    found, points = sent.normalised(), sent.points
    here, _ = prepare("logs", body, "10.0.0.7", Pricer(PricingConfig.from_dict({"markup": "0.25"})))
    assert points == 0 and found.rejected == 0
    assert len(found.records) == 20
    assert found.records == here.records  # every field, costs with the worker's markup included
    assert all(r.customer_cost_nusd and r.customer_cost_nusd > r.provider_cost_nusd for r in found.records)
    assert found.records[0].source_ip == "10.0.0.7"


def test_workers_raise_malformed_for_bytes_that_are_no_request(workers):
    with pytest.raises(Malformed, match="not a protobuf ExportLogsServiceRequest"):
        workers.prepare("logs", b"\x0a\xff\xff\xff garbage", None)
    assert len(workers.prepare("logs", audit_logs(2).SerializeToString(), None).normalised().records) == 2


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == pid and b"spawn_main" in command:
                found.append(int(entry.name))
    return sorted(found)


def test_a_worker_that_dies_loses_and_doubles_nothing(tmp_path):
    receiver = Receiver(tmp_path, f"sqlite:///{tmp_path}/audit.db", receiver={"workers": 2}).start()
    try:
        assert receiver.process is not None
        before = _children(receiver.process.pid)
        assert len(before) == 2, before
        os.kill(before[0], signal.SIGKILL)  # a worker of the receiver this test started
        logs = f"{receiver.http_url}/v1/logs"
        answers = []
        deadline = time.monotonic() + 60
        for batch in range(5):
            body = audit_logs(50, start=batch * 50).SerializeToString()
            while True:  # what an OTLP exporter does: retry what was not acknowledged
                status = httpx.post(logs, content=body, headers=PROTOBUF, timeout=30).status_code
                answers.append(status)
                if status == 200 or time.monotonic() > deadline:
                    break
                assert status == 503
                time.sleep(0.2)
        assert answers[-1] == 200
        assert 503 in answers  # the request the dead worker held was refused, not lost or half stored
        assert stored(receiver) == 250
        exposition = receiver.metrics()
        assert metric_sum(exposition, "llmtally_receiver_records_stored_total") == 250
        assert metric_sum(exposition, "llmtally_receiver_refused_requests_total", reason="unavailable") >= 1
        after = _children(receiver.process.pid)
        assert 1 <= len(after) <= 2 and before[0] not in after  # a new pool took its place (workers start on demand)
    finally:
        assert receiver.stop() == 0


def test_workers_end_when_the_receiver_is_killed(tmp_path):
    receiver = Receiver(tmp_path, f"sqlite:///{tmp_path}/audit.db", receiver={"workers": 2}).start()
    assert receiver.process is not None
    workers = _children(receiver.process.pid)
    assert len(workers) == 2
    receiver.process.kill()  # SIGKILL: no clean shutdown of the pool
    receiver.process.wait(10)
    deadline = time.monotonic() + 15
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _running(pid)], "orphan workers left behind"


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (an exited one not yet reaped is a zombie, state Z)."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False
