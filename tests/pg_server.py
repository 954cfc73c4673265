"""A throwaway PostgreSQL server for tests and benchmarks: Debian's binaries, a temp data dir, loopback only.

`PostgresServer.create()` runs initdb into a new temp dir (as the `postgres` OS user when we are root: initdb
refuses root), `start()` runs `postgres` on 127.0.0.1 at a free port and waits until it accepts connections,
`stop()` shuts it down by PID (fast shutdown: open transactions are rolled back), `destroy()` stops it and removes
the dir. Missing binaries fail the calling test with the way to install them.

``python tests/pg_server.py`` starts one with durable settings, prints its DSN and runs until Ctrl-C (for
``bench/query_latency.py --pg DSN``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

INSTALL_HINT = "run `bash scripts/test.sh` (it installs Debian's postgresql package) or `apt-get install postgresql`"
# For tests only: a throwaway cluster need not survive a power cut.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and postgres."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")]
    found = [d for d in found if (d / "initdb").exists()]
    if not found:
        raise FileNotFoundError(f"PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: {INSTALL_HINT}")
    return max(found, key=lambda d: float(d.parent.name) if d.parent.name.replace(".", "").isdigit() else 0.0)


_GIVEN: set[int] = set()


def free_port() -> int:
    """A loopback port free now and not handed out before by this process (the kernel may give the same free port
    to two calls in a row: a server's two listeners would then collide)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


@dataclass
class PostgresServer:
    bindir: Path
    root: Path  # temp dir: data/, socket/, server.log
    port: int
    settings: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, settings: dict[str, str] | None = None) -> PostgresServer:
        """initdb a new cluster in a temp dir (not started)."""
        bindir = find_bindir()
        root = Path(tempfile.mkdtemp(prefix="llmtally-pg-"))
        server = cls(bindir, root, free_port(), dict(FAST_SETTINGS if settings is None else settings))
        (root / "socket").mkdir()
        owner = server._owner()
        if owner is not None:
            for path in (root, root / "socket"):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        try:
            initdb = [str(bindir / "initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth=trust"]
            server._run_as_owner(
                [*initdb, "-E", "UTF8", "--locale=C", "--no-sync"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                check=True,
            )
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    @staticmethod
    def _owner() -> pwd.struct_passwd | None:
        """The OS user to run the server as: `postgres` when we are root (initdb refuses root), else ourselves."""
        return pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def _run_as_owner(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        owner = self._owner()
        if owner is not None:
            kwargs.update(user=owner.pw_uid, group=owner.pw_gid, extra_groups=[])
        return subprocess.run(argv, cwd=self.root, **kwargs)

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Run `postgres` on 127.0.0.1:port and wait until it accepts connections."""
        argv = [str(self.bindir / "postgres"), "-D", str(self.root / "data"), "-p", str(self.port)]
        argv += ["-k", str(self.root / "socket"), "-c", "listen_addresses=127.0.0.1"]
        for name, value in self.settings.items():
            argv += ["-c", f"{name}={value}"]
        owner = self._owner()
        extra: dict[str, Any] = {}
        if owner is not None:
            extra = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, **extra)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}:\n{self.log()}")
            try:
                psycopg.connect(self.dsn, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres not ready after {timeout_s}s:\n{self.log()}") from None
                time.sleep(0.1)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fast shutdown by PID (sessions are ended, open transactions rolled back); SIGKILL past the timeout."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text(errors="replace")[-4000:]
        return ""

    def create_database(self) -> str:
        """A new empty database; returns its DSN."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn_for(name)

    def drop_database(self, dsn: str) -> None:
        name = dsn.rsplit("/", 1)[1]
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server = PostgresServer.create(settings={})
    try:
        server.start()
        print(server.create_database(), flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
