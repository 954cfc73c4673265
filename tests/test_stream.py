"""The live feed of a running `llmtally serve` (SQLite and PostgreSQL): real HTTP clients and `llmtally tail` read
/api/v1/requests/stream while an instrumented app's requests flow in; a member token sees only their own; a client
that resumes with Last-Event-ID (also across a receiver restart) loses and repeats nothing, late records (old
timestamps) included; a client too slow to read is dropped while the receiver keeps accepting; the number of
streams is bounded."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from instrumented_app import APP_CALLS, run_instrumented_app
from llmtally.exporter.normalise.record import Record
from llmtally.exporter.store import open_store
from receiver import Receiver
from test_store import make

ADMIN = "admin-token-0123456789abcdef"
ALICE = "alice-token-0123456789abcdef"
TOKENS = [
    {"name": "ops", "role": "admin", "token": ADMIN},
    {"name": "alice", "role": "member", "user": "alice", "token_sha256": hashlib.sha256(ALICE.encode()).hexdigest()},
]
ALL_TIME = (0, 2**62)
MAX_CLIENTS = 8


class Reader:
    """A real HTTP client reading the stream on its own thread: the events (id, request row) and comments."""

    def __init__(self, url: str, token: str, last_event_id: str | None = None, **params: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.comments = 0
        self.status: int | None = None
        self.ended = threading.Event()
        self._stop = threading.Event()
        headers = {"Authorization": f"Bearer {token}", **({"Last-Event-ID": last_event_id} if last_event_id else {})}
        self._thread = threading.Thread(target=self._read, args=(url, headers, params), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict[str, str], params: dict[str, str]) -> None:
        try:
            timeout = httpx.Timeout(10.0, read=30.0)
            with httpx.stream(
                "GET", f"{url}/api/v1/requests/stream", headers=headers, params=params, timeout=timeout
            ) as r:
                self.status = r.status_code
                event_id, data = "", ""
                for line in r.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(":"):
                        self.comments += 1
                    elif line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif not line and data:
                        self.events.append((event_id, json.loads(data)))
                        data = ""
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def ids(self) -> list[str]:
        return [row["id"] for _, row in self.events]

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        wait_until(lambda: len(self.events) >= count, f"{count} events (got {len(self.events)})", timeout)

    def close(self) -> None:
        self._stop.set()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def stored(url: str) -> list[Record]:
    with open_store(url) as store:
        return store.records_between(*ALL_TIME, limit=100_000)


@pytest.fixture
def receiver(store_url: str, tmp_path: Path) -> Iterator[Receiver]:
    served = Receiver(
        tmp_path,
        store_url,
        api={"tokens": TOKENS},
        stream={
            "heartbeat_seconds": 0.5,
            "poll_seconds": 0.2,
            "max_clients": MAX_CLIENTS,
            "client_buffer_records": 1000,
        },
    )
    served.start()
    try:
        yield served
    finally:
        assert served.stop() == 0  # open streams end when the receiver shuts down
    assert "Traceback" not in served.log.read_text()


def tail(receiver: Receiver, count: int, *args: str) -> subprocess.Popen[str]:
    """`llmtally tail --json --count N` against `receiver`, its stderr in a file; returns once it is following."""
    command = [str(Path(sys.executable).with_name("llmtally")), "tail", "--url", receiver.http_url, "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMTALLY_")} | {"LLMTALLY_API_TOKEN": ADMIN}
    errors = receiver.workdir / f"tail-{time.monotonic_ns()}.err"
    process = subprocess.Popen(
        [*command, "--count", str(count), *args], env=env, stdout=subprocess.PIPE, stderr=errors.open("w"), text=True
    )
    process.errors = errors  # type: ignore[attr-defined]
    wait_until(lambda: errors.read_text().count("following") >= 1, f"tail following: {errors.read_text()}")
    return process


def followed(process: subprocess.Popen[str]) -> int:
    return int(process.errors.read_text().count("following"))  # type: ignore[attr-defined]


def test_live_feed_while_traffic_flows(receiver: Receiver, store_url: str, provider: Any, tmp_path: Path):
    url = receiver.http_url
    admin, alice = Reader(url, ADMIN), Reader(url, ALICE)
    refused = httpx.get(
        f"{url}/api/v1/requests/stream", params={"user": "bob"}, headers={"Authorization": f"Bearer {ALICE}"}
    )
    assert refused.status_code == 403
    assert (
        httpx.get(
            f"{url}/api/v1/requests/stream", headers={"Authorization": f"Bearer {ADMIN}"}, params={"range": "7d"}
        ).status_code
        == 400
    )
    bad_id = httpx.get(
        f"{url}/api/v1/requests/stream", headers={"Authorization": f"Bearer {ADMIN}", "Last-Event-ID": "9-x"}
    )
    assert bad_id.status_code == 400 and "Last-Event-ID" in bad_id.json()["error"]
    wait_until(lambda: admin.status == 200 and alice.status == 200, "both streams open")
    later = tail(receiver, 2 * APP_CALLS + 5)  # prints every request of both runs, then the late ones
    try:
        wait_until(lambda: admin.comments >= 2, "a heartbeat")  # the first line and a keep-alive
        run_instrumented_app(provider.base_url, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint)
        first = stored(store_url)
        assert len(first) == APP_CALLS
        admin.wait_for(APP_CALLS)
        alices = sorted(r.record_id for r in first if r.user_id == "alice")
        alice.wait_for(len(alices))
        time.sleep(1)  # nothing more comes
        assert sorted(admin.ids()) == sorted(r.record_id for r in first) and len(admin.events) == APP_CALLS
        assert sorted(alice.ids()) == alices and {row["user"] for _, row in alice.events} == {"alice"}
        row = next(row for _, row in admin.events if row["id"] == first[0].record_id)
        assert row["customer_cost_usd"] == pytest.approx((first[0].customer_cost_nusd or 0) / 1e9)
        assert row["model"] == first[0].request_model and "input_messages" not in row  # the request-log row
        filtered = Reader(url, ADMIN, provider="anthropic")

        # A second run: a reader leaves after 3 events and resumes with the last id, after late records (old
        # timestamps) were written by "another replica" straight into the store.
        partial = Reader(url, ADMIN)
        wait_until(lambda: partial.status == 200, "the partial stream open")
        run_instrumented_app(provider.base_url, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint)
        partial.wait_for(3)
        partial.close()
        last_id = partial.events[2][0]
        seen = partial.ids()[:3]
        second = [r for r in stored(store_url) if r.record_id not in {f.record_id for f in first}]
        assert len(second) == APP_CALLS
        old = time.time_ns() - 3 * 86_400 * 10**9
        late = [make(900 + i, start_ns=old + i, user_id="alice") for i in range(5)]
        with open_store(store_url) as store:
            assert len(store.write(late)) == 5
        resumed = Reader(url, ADMIN, last_event_id=last_id)
        want = sorted({r.record_id for r in second} - set(seen)) + sorted(r.record_id for r in late)
        resumed.wait_for(len(want))
        time.sleep(1)
        assert sorted(resumed.ids()) == sorted(want) and len(resumed.ids()) == len(want)  # none lost, none twice
        alice.wait_for(len(alices) + 4 + 5)  # the member's stream: her second-run requests and the late ones
        assert {row["user"] for _, row in alice.events} == {"alice"}
        filtered.wait_for(1)
        assert {row["provider"] for _, row in filtered.events} == {"anthropic"}
        assert len(filtered.events) == sum(r.provider == "anthropic" for r in second + late)

        # `llmtally tail` printed what the admin's stream got, in the same order.
        admin.wait_for(2 * APP_CALLS + 5)
        out, _ = later.communicate(timeout=60)
        assert later.returncode == 0, later.errors.read_text()  # type: ignore[attr-defined]
        printed = [json.loads(line)["id"] for line in out.splitlines()]
        assert printed == admin.ids() and len(set(printed)) == 2 * APP_CALLS + 5
    finally:
        if later.poll() is None:
            later.kill()
            later.wait()
        for reader in (admin, alice):
            reader.close()


def test_tail_resumes_across_a_restart(receiver: Receiver, store_url: str):
    printed = tail(receiver, 6)
    try:
        with open_store(store_url) as store:
            store.write([make(i, start_ns=time.time_ns()) for i in range(1, 4)])
        time.sleep(1.5)  # tail prints them
        assert receiver.stop() == 0  # its stream ends with the shutdown; tail reconnects until it is back
        with open_store(store_url) as store:
            store.write([make(i, start_ns=time.time_ns() - 86_400 * 10**9) for i in range(4, 7)])
        receiver.start()
        out, _ = printed.communicate(timeout=60)
        err = printed.errors.read_text()  # type: ignore[attr-defined]
        assert printed.returncode == 0, err
        ids = [json.loads(line)["id"] for line in out.splitlines()]
        assert ids == [f"{i:016x}" for i in range(1, 7)], (ids, err)
        assert "reconnecting" in err and followed(printed) == 2
    finally:
        if printed.poll() is None:
            printed.kill()
            printed.wait()


def test_a_slow_client_is_dropped_and_the_receiver_keeps_accepting(
    receiver: Receiver, store_url: str, provider: Any, tmp_path: Path
):
    url = receiver.http_url
    fast = Reader(url, ADMIN)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", receiver.http_port))
    slow.sendall(f"GET /api/v1/requests/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\r\n".encode())
    others = [Reader(url, ADMIN) for _ in range(MAX_CLIENTS - 2)]
    try:
        wait_until(lambda: all(r.status == 200 for r in (fast, *others)), "streams open")
        full = httpx.get(f"{url}/api/v1/requests/stream", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
        assert full.status_code == 503 and full.headers["retry-after"] and "max_clients" in full.json()["error"]
        for other in others:
            other.close()
        # Another replica's records flood the feed; the slow client reads none.
        written = 0
        with open_store(store_url) as store:
            while "dropped a stream too slow" not in receiver.log.read_text():
                assert written < 40_000, "the slow client was never dropped"
                base = 10_000 + written
                store.write([make(base + i, start_ns=time.time_ns() - i) for i in range(1000)])
                written += 1000
                time.sleep(0.2)
        slow.settimeout(20)
        while slow.recv(65536):  # the receiver closed the connection: its buffered events, then the end
            pass
        # The receiver keeps taking requests, and the client that keeps up got every record.
        run_instrumented_app(provider.base_url, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint)
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        fast.wait_for(written + APP_CALLS, timeout=60)
        assert len(set(fast.ids())) == len(fast.ids()) == written + APP_CALLS == len(stored(store_url))
        assert not fast.ended.is_set()
        # The dropped client's slot is free again.
        again = Reader(url, ADMIN)
        wait_until(lambda: again.status == 200, "a new stream in the freed slot")
        again.close()
    finally:
        slow.close()
        fast.close()


def test_a_postgresql_transaction_that_commits_late_is_not_skipped(pg_server: Any, tmp_path: Path):
    """PostgreSQL hands out positions at insert: a record whose transaction commits after a later one's is delivered
    when it commits, to the live stream, to a client that resumed meanwhile and to one that resumes afterwards."""
    import psycopg

    from llmtally.exporter.store.columns import COLUMN_LIST, COLUMNS, record_to_row

    store_url = pg_server.create_database()
    receiver = Receiver(tmp_path, store_url, api={"tokens": TOKENS}, stream={"poll_seconds": 0.1})
    receiver.start()
    url = receiver.http_url
    readers: list[Reader] = []
    try:
        live = Reader(url, ADMIN)
        readers.append(live)
        wait_until(lambda: live.status == 200, "the stream open")
        early, late = make(1, start_ns=time.time_ns()), make(2, start_ns=time.time_ns())
        with psycopg.connect(store_url) as held:  # a transaction in flight: its record's position comes first
            values = ", ".join(["%s"] * len(COLUMNS))
            held.execute(f"INSERT INTO completion_records ({COLUMN_LIST}) VALUES ({values})", record_to_row(early))
            with open_store(store_url) as store:
                store.write([late])
            live.wait_for(1)
            gap_id = live.events[0][0]
            assert live.ids() == [late.record_id] and ":" in gap_id  # the id names the position still missing
            meanwhile = Reader(url, ADMIN, last_event_id=gap_id)
            readers.append(meanwhile)
            wait_until(lambda: meanwhile.status == 200, "the resumed stream open")
            time.sleep(0.5)
            assert meanwhile.events == []
            held.commit()
        live.wait_for(2)
        assert live.ids() == [late.record_id, early.record_id] and ":" not in live.events[1][0]
        meanwhile.wait_for(1)
        afterwards = Reader(url, ADMIN, last_event_id=gap_id)
        readers.append(afterwards)
        afterwards.wait_for(1)
        time.sleep(1)
        assert meanwhile.ids() == afterwards.ids() == [early.record_id] and len(live.events) == 2
    finally:
        for reader in readers:
            reader.close()
        assert receiver.stop() == 0
        pg_server.drop_database(store_url)


def test_a_long_catch_up_comes_a_buffer_at_a_time(store_url: str, tmp_path: Path):
    """A client further behind than its buffer gets a buffer's worth per answer and comes back for the rest."""
    records = [make(i, start_ns=time.time_ns() - i * 10**9) for i in range(1, 26)]
    with open_store(store_url) as store:
        store.write(records)
    receiver = Receiver(tmp_path, store_url, api={"tokens": TOKENS}, stream={"client_buffer_records": 10})
    receiver.start()
    try:
        got: list[str] = []
        last = "0"  # before the first record ever stored
        for answer in range(3):
            reader = Reader(receiver.http_url, ADMIN, last_event_id=last)
            reader.wait_for(10 if answer < 2 else 5)
            if answer < 2:
                assert reader.ended.wait(10)  # the answer ended after one buffer
            else:
                time.sleep(1)
                assert not reader.ended.is_set() and len(reader.events) == 5  # caught up: live from here
            reader.close()
            got += reader.ids()
            last = reader.events[-1][0]
        with open_store(store_url) as store:
            order = [r.record_id for _, r in store.records_after(0, 100)]
        assert got == order and sorted(got) == sorted(r.record_id for r in records)
    finally:
        assert receiver.stop() == 0


def test_the_feed_filters_like_the_request_log() -> None:
    """Exact HTTP status codes, request parameters and custom dimensions narrow the live feed as they narrow the
    request log (the feed matches stored records in memory, the log in SQL)."""
    from dataclasses import replace

    from llmtally.exporter.api import extra_filters
    from llmtally.exporter.api.feed import matcher
    from llmtally.exporter.api.params import LOG_STATUSES, Filters

    def feed_ids(records: list[Record], given: dict[str, str], extra: dict[str, list[str]]) -> list[str]:
        filters = Filters.parse(given, LOG_STATUSES)
        filters = replace(filters, json=extra_filters.parse(extra, ("team",)))
        keep = matcher(filters)
        return [r.record_id for r in records if keep(r)]

    one = replace(make(1), params={"temperature": 0.2, "max_tokens": 100}, dimensions={"team": "search"})
    two = replace(
        make(2), params={"temperature": 0.7}, dimensions={"team": "platform"}, status="error", http_status=429
    )
    three = replace(make(3), http_status=500, status="error")
    records = [one, two, three]
    assert feed_ids(records, {}, {}) == [r.record_id for r in records]
    assert feed_ids(records, {"http_status": "429"}, {}) == [two.record_id]
    assert feed_ids(records, {"status": "500,429"}, {}) == [two.record_id, three.record_id]
    assert feed_ids(records, {}, {"param.temperature": ["0.20"]}) == [one.record_id]
    assert feed_ids(records, {}, {"param.max_tokens": ["100"]}) == [one.record_id]
    assert feed_ids(records, {}, {"team": ["platform,search"]}) == [one.record_id, two.record_id]
    assert feed_ids(records, {"status": "error"}, {"team": ["platform"]}) == [two.record_id]
