"""Records per second through the collector into one `llmtally serve` vs N replicas sharing one PostgreSQL.

``python bench/replicas.py [--records 100000] [--replicas 1 2] [--senders 2]`` builds the test collector
(scripts/build-collector.sh, cached), starts a throwaway PostgreSQL with durable settings (tests/pg_server.py, one
new database per run), and for each replica count: starts the replicas on a fresh database, the collector with
otel-collector-config.yaml (one replica) or otel-collector-loadbalancing.yaml (static resolver listing the
replicas, routing by trace id), and sends pre-built OTLP/gRPC export requests of 512 llmtally audit events each
(bench/receiver_throughput.py's, every record in its own trace) to the collector from `--senders` streams. It reports
records stored per second, from the first request sent until the replicas have stored them all (received by the
collector, batched, routed, normalised, priced, written with rollups, acknowledged), each replica's share, and the
CPU cores kept busy on average by the replicas, the collector and PostgreSQL's backends, how busy the whole machine
was, and how often a replica's transaction waited for a lock or for I/O (where the bottleneck is).
A benchmark, not a test: everything runs on this machine, so the replicas share its cores with the collector,
PostgreSQL and the load generator.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from receiver_throughput import BATCH, EXPORT, build_requests, send_all  # noqa: E402

from collector import Collector, build_collector, write_config  # noqa: E402
from pg_server import PostgresServer  # noqa: E402
from receiver import Receiver, metric_sum  # noqa: E402

SINGLE = ROOT / "otel-collector-config.yaml"
BALANCED = ROOT / "otel-collector-loadbalancing.yaml"


def collector_for(binary: Path, workdir: Path, replicas: list[Receiver]) -> Collector:
    """The shipped single-receiver config for one replica; the load-balanced one (static resolver) for more."""
    if len(replicas) == 1:
        env = {"LLMTALLY_OTLP_ENDPOINT": f"127.0.0.1:{replicas[0].grpc_port}"}
        return Collector(binary, workdir, [SINGLE], env)
    config = yaml.safe_load(BALANCED.read_text())
    hostnames = [f"127.0.0.1:{r.grpc_port}" for r in replicas]
    for name, exporter in config["exporters"].items():
        if name.startswith("loadbalancing/"):
            exporter["resolver"] = {"static": {"hostnames": hostnames}}
    return Collector(binary, workdir, [write_config(workdir / "balanced.yaml", config)])


def stored(replicas: list[Receiver]) -> list[float]:
    return [metric_sum(r.metrics(), "llmtally_receiver_records_stored_total") for r in replicas]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def cpu_of(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each group of processes (ended ones count no more)."""
    totals = {}
    for name, pids in groups.items():
        total = 0.0
        for pid in pids:
            with contextlib.suppress(OSError):
                total += cpu_seconds(pid)
        totals[name] = total
    return totals


class Waits:
    """Samples PostgreSQL's active backends of `dsn` every 0.1 s: how often one waits for a lock held by another
    (the replicas' transactions adding to the same rollup rows), or for its commit to reach the disk."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.samples = 0
        self.seen: dict[str, int] = {"Lock": 0, "IO": 0}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        query = (
            "SELECT DISTINCT wait_event_type FROM pg_stat_activity"
            " WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()"
        )
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.done.wait(0.1):
                kinds = {kind for (kind,) in conn.execute(query).fetchall()}
                self.samples += 1
                for kind in self.seen:
                    self.seen[kind] += kind in kinds

    def share(self, kind: str) -> float:
        return self.seen[kind] / self.samples if self.samples else 0.0


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, over all cores (/proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / tick, sum(ticks) / tick


@dataclass(frozen=True)
class Result:
    shares: list[float]  # records stored by each replica
    seconds: float
    cpu: dict[str, float]  # CPU seconds of the replicas, the collector and PostgreSQL during the run
    machine_busy: float  # share of the machine's CPU time (all cores, every process on it) that was busy
    lock_waits: float  # share of the samples in which a replica's transaction waited for a lock
    io_waits: float  # ... for I/O (WAL flush at commit)

    @property
    def stored(self) -> float:
        return sum(self.shares)

    @property
    def per_second(self) -> float:
        return self.stored / self.seconds


def run(binary: Path, server: PostgresServer, count: int, records: int, senders: int, workdir: Path) -> Result:
    dsn = server.create_database()
    replicas = [Receiver(workdir, dsn) for _ in range(count)]
    with contextlib.ExitStack() as stack:
        stack.callback(server.drop_database, dsn)
        for replica in replicas:
            stack.callback(replica.stop)
            replica.start()
        collector = collector_for(binary, workdir, replicas)
        stack.callback(collector.stop)
        collector.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}")
        stack.callback(channel.close)
        export = channel.unary_unary(EXPORT)
        warm = build_requests(BATCH * 4)  # same ids as the first batches: stored now, duplicates later
        for body in warm:
            export(body, timeout=60)
        while sum(stored(replicas)) < len(warm) * BATCH:
            time.sleep(0.2)
        base = stored(replicas)
        requests = build_requests(records)
        expected = sum(base) + records - len(warm) * BATCH  # the warm-up ids come again: not stored twice

        assert server.process is not None and collector.process is not None
        groups = {
            "replicas": [r.process.pid for r in replicas if r.process is not None],
            "collector": [collector.process.pid],
            "postgresql": children(server.process.pid),  # the backends of the replicas' connections
        }
        cpu = cpu_of(groups)
        machine = machine_cpu()
        waits = Waits(dsn)
        waits.thread.start()
        started = time.perf_counter()
        send_all(export, requests, senders)
        deadline = time.monotonic() + 600
        while sum(now := stored(replicas)) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"stored {sum(now)} of {expected}: {collector.tail()}")
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        used = {name: seconds - cpu[name] for name, seconds in cpu_of(groups).items()}
        busy, total = (after - before for after, before in zip(machine_cpu(), machine, strict=True))
        waits.done.set()
        waits.thread.join()
        shares = [after - before for after, before in zip(now, base, strict=True)]
        return Result(shares, elapsed, used, busy / total, waits.share("Lock"), waits.share("IO"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--senders", type=int, default=2)
    args = parser.parse_args()
    binary = build_collector()
    server = PostgresServer.create(settings={})  # durable settings, as in production
    try:
        server.start()
        with tempfile.TemporaryDirectory() as tmp:
            print(
                "| replicas | new records | seconds | records/s | speed-up | stored by each replica | CPU cores busy: "
                "replicas / collector / PostgreSQL | machine busy | waiting: lock / I/O |"
            )
            print("| ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- |")
            first = None
            for count in args.replicas:
                r = run(binary, server, count, args.records, args.senders, Path(tmp))
                first = first or r.per_second
                shares = " / ".join(f"{s:.0f}" for s in r.shares)
                busy = " / ".join(f"{r.cpu[k] / r.seconds:.2f}" for k in ("replicas", "collector", "postgresql"))
                waits = f"{r.lock_waits:.0%} / {r.io_waits:.0%}"
                print(
                    f"| {count} | {r.stored:.0f} | {r.seconds:.1f} | {r.per_second:,.0f} "
                    f"| {r.per_second / first:.2f}x | {shares} | {busy} | {r.machine_busy:.0%} | {waits} |",
                    flush=True,
                )
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
