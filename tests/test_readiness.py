"""`/readyz` of a real `llmtally serve` follows writes, not only a read ping: SQLite on a small tmpfs filled up (and
freed again), PostgreSQL that answers reads but takes no writes, and PostgreSQL stopped (and started again).

The full disk is a real one: a 8 MiB tmpfs mounted for the test (the tests run as root in a container that may
mount; elsewhere the fixture fails, saying so), filled with a file until the kernel answers ENOSPC.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from google.rpc import code_pb2, status_pb2

from pg_server import PostgresServer
from receiver import Receiver
from test_receiver import PROTOBUF, audit_logs, stored


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def readyz(receiver: Receiver) -> tuple[int, str]:
    answer = receiver.get("/readyz")
    return answer.status_code, answer.json().get("reason", "")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-disk test (needs root and mount rights): {done.stderr}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path: Path) -> None:
    """Writes `path` until the file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as error:
        assert error.errno == errno.ENOSPC, error
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def post(receiver: Receiver, count: int, start: int) -> httpx.Response:
    body = audit_logs(count, start=start).SerializeToString()
    return httpx.post(f"{receiver.http_url}/v1/logs", content=body, headers=PROTOBUF, timeout=60)


def test_readyz_is_false_while_the_disk_is_full(small_disk: Path, tmp_path: Path) -> None:
    receiver = Receiver(
        tmp_path, f"sqlite:///{small_disk}/audit.db", receiver={"workers": 0, "retry_after_seconds": 2}
    ).start()
    try:
        assert post(receiver, 50, 0).status_code == 200
        assert readyz(receiver)[0] == 200
        fill(small_disk / "filler")
        status, why = readyz(receiver)
        assert status == 503 and "full" in why, why  # before any write was even tried

        refused = post(receiver, 3000, 1000)  # a batch larger than what the WAL can take in place
        assert refused.status_code == 503 and refused.headers["retry-after"] == "2", refused.text
        assert status_pb2.Status.FromString(refused.content).code == code_pb2.UNAVAILABLE
        (small_disk / "filler").unlink()
        # Space is back, but the last write failed: not ready for Retry-After seconds (or until a write succeeds).
        status, why = readyz(receiver)
        assert status == 503 and "the last write failed" in why, why
        wait_for(lambda: readyz(receiver)[0] == 200)
        assert post(receiver, 3000, 1000).status_code == 200  # the client's retry
    finally:
        assert receiver.stop() == 0
    assert stored(receiver) == 3050


def test_readyz_follows_writes_on_postgresql(tmp_path: Path, pg_server: PostgresServer) -> None:
    dsn = pg_server.create_database()
    name = dsn.rsplit("/", 1)[1]
    receiver = Receiver(tmp_path, dsn, receiver={"workers": 0, "retry_after_seconds": 1}).start()

    def set_read_only(on: bool) -> None:
        """Every new session of the database read-only (or not), and the open ones ended (the receiver reconnects)."""
        with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = {'on' if on else 'off'}")
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))

    try:
        assert post(receiver, 20, 0).status_code == 200
        # A database that answers reads but takes no writes: a read ping alone would say ready.
        set_read_only(True)
        wait_for(lambda: "read-only transaction" in readyz(receiver)[1])
        assert readyz(receiver)[0] == 503
        with psycopg.connect(dsn, autocommit=True) as reader:
            assert reader.execute("SELECT count(*) FROM completion_records").fetchone() == (20,)
        # A batch sent meanwhile is refused as retryable (503), never rejected for good: its records are not lost.
        refused = post(receiver, 5, 200)
        assert refused.status_code == 503, refused.text
        set_read_only(False)
        wait_for(lambda: readyz(receiver)[0] == 200)
        assert post(receiver, 5, 200).status_code == 200  # the exporter's retry

        pg_server.stop()
        try:
            status, why = readyz(receiver)
            assert status == 503 and "PostgreSQL unavailable" in why, why
            assert post(receiver, 10, 100).status_code == 503
        finally:
            pg_server.start()
        wait_for(lambda: readyz(receiver)[0] == 200)
        assert post(receiver, 10, 100).status_code == 200
        assert stored(receiver) == 35
    finally:
        assert receiver.stop() == 0
        pg_server.drop_database(dsn)
