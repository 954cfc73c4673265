"""Records per second that `llmtally serve` sustains from an OTLP/gRPC load generator, and its memory.

``python bench/receiver_throughput.py [--records 200000] [--senders 2] [--pg DSN]`` starts the receiver as a
subprocess (SQLite in a temporary directory, or the PostgreSQL DSN given), pre-builds export requests of 512
llmtally audit events each (about 30 attributes, distinct span ids, as the instrumentation emits them), sends them
from `--senders` concurrent gRPC streams of requests, and reports records stored per second (end to end: received,
normalised, priced, written, acknowledged) and the receiver's resident memory sampled during the run.
A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
from opentelemetry.exporter.otlp.proto.common._internal import _encode_key_value  # the OTel exporter's own encoder
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

BATCH = 512
MODELS = ("gpt-4o-mini", "gpt-4.1", "claude-haiku-4-5", "claude-sonnet-4-5", "o4-mini", "text-embedding-3-small")
EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def build_requests(records: int) -> list[bytes]:
    """Serialized export requests of BATCH audit events each, every span id distinct."""
    out = []
    now = time.time_ns()
    for first in range(0, records, BATCH):
        logs = []
        for i in range(first, min(first + BATCH, records)):
            model = MODELS[i % len(MODELS)]
            provider = "anthropic" if model.startswith("claude") else "openai"
            attrs = {
                "gen_ai.operation.name": "embeddings" if model.startswith("text-") else "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "gen_ai.response.model": model,
                "server.address": "api.example.com",
                "server.port": 443,
                "llmtally.duration": 0.8 + (i % 7) / 10,
                "gen_ai.request.max_tokens": 512,
                "gen_ai.request.temperature": 0.2,
                "gen_ai.request.stream": i % 2 == 0,
                "gen_ai.response.id": f"resp-{i}",
                "gen_ai.response.finish_reasons": "stop",
                "gen_ai.response.time_to_first_chunk": 0.12,
                "gen_ai.usage.input_tokens": 1000 + i % 900,
                "gen_ai.usage.output_tokens": 100 + i % 300,
                "llmtally.usage.total_tokens": 1100 + i % 900 + i % 300,
                "gen_ai.usage.cache_read.input_tokens": 512,
                "gen_ai.usage.cache_creation.input_tokens": 0,
                "gen_ai.usage.reasoning.output_tokens": 32,
                "llmtally.usage.source": "provider",
                "http.response.status_code": 200,
                "llmtally.stream.outcome": "completed",
                "llmtally.provider.request_id": f"req-{i}",
                "llmtally.ratelimit.requests.limit": 10000,
                "llmtally.ratelimit.requests.remaining": 9000,
                "llmtally.ratelimit.tokens.limit": 3000000,
                "llmtally.ratelimit.tokens.remaining": 2900000,
                "user.id": f"user-{i % 50}",
                "llmtally.api_key": f"team-{i % 5}",
                "llmtally.feature": f"feature-{i % 20}",
                "llmtally.department": f"dept-{i % 4}",
            }
            logs.append(
                LogRecord(
                    time_unix_nano=now,
                    event_name="llmtally.completion",
                    trace_id=os.urandom(16),
                    span_id=(i + 1).to_bytes(8, "big"),
                    attributes=[_encode_key_value(k, v) for k, v in attrs.items()],
                )
            )
        request = ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=logs)])])
        request.resource_logs[0].resource.attributes.append(_encode_key_value("service.name", "bench"))
        out.append(request.SerializeToString())
    return out


def send_all(export: Callable[..., object], requests: list[bytes], senders: int) -> None:
    """Sends the requests from `senders` concurrent threads (each its share in turn, waiting for each answer)."""

    def send(part: list[bytes]) -> None:
        for body in part:
            export(body, timeout=120)

    threads = [threading.Thread(target=send, args=(requests[i::senders],)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by process `pid`, and by its child processes (the workers)."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(path: Path) -> list[str]:
        return path.read_text().rsplit(")", 1)[1].split()  # the fields after "(comm)"

    own = stat(Path(f"/proc/{pid}/stat"))
    children = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = stat(entry / "stat")
            except OSError:
                continue
            if int(fields[1]) == pid:
                children += (int(fields[11]) + int(fields[12])) / tick
    return (int(own[11]) + int(own[12])) / tick, children


def run(store: str, records: int, senders: int, workers: int | None = None) -> dict[str, float]:
    grpc_port, http_port = _free_port(), _free_port()
    llmtally = str(Path(sys.executable).with_name("llmtally"))
    process = subprocess.Popen(
        [
            llmtally,
            "serve",
            "--store",
            store,
            "--otlp-grpc",
            f"127.0.0.1:{grpc_port}",
            "--http",
            f"127.0.0.1:{http_port}",
            *(["--workers", str(workers)] if workers is not None else []),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        requests = build_requests(records)
        warm = build_requests(BATCH * 4)  # same ids as the first batches: stored now, duplicates later
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        export = channel.unary_unary(EXPORT)
        for body in warm:
            export(body, timeout=60)
        memory: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                memory.append(_rss_mib(process.pid))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample)
        sampler.start()
        cpu_before = _cpu_seconds(process.pid)
        started = time.perf_counter()
        send_all(export, requests, senders)
        elapsed = time.perf_counter() - started
        cpu_after = _cpu_seconds(process.pid)
        done.set()
        sampler.join()
        metrics = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=30).text
        stored = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("llmtally_receiver_records_stored_total")
        )
        groups = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("llmtally_receiver_write_latency_seconds_count")
        )
        new = stored - len(warm) * BATCH
        return {
            "records": float(records),
            "stored": new,
            "seconds": elapsed,
            "records_per_second": new / elapsed,
            "records_per_transaction": stored / groups if groups else 0.0,
            "receiver_cpu_us_per_record": (cpu_after[0] - cpu_before[0]) / new * 1e6,
            "workers_cpu_us_per_record": (cpu_after[1] - cpu_before[1]) / new * 1e6,
            "rss_first_mib": memory[0] if memory else 0.0,
            "rss_max_mib": max(memory) if memory else 0.0,
            "rss_last_mib": memory[-1] if memory else 0.0,
            "rss_median_mib": statistics.median(memory) if memory else 0.0,
        }
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def breakdown(records: int) -> list[tuple[str, float]]:
    """CPU µs per record of each step of ingest, run one step at a time in this process (the calling thread's CPU
    time, the least of 5 runs): where a record's time goes."""
    import pickle

    from llmtally.exporter.metrics import Metrics
    from llmtally.exporter.normalise import otlp
    from llmtally.exporter.normalise.convert import to_record
    from llmtally.exporter.normalise.limits import check
    from llmtally.exporter.normalise.record import Record, as_values
    from llmtally.exporter.normalise.values import attributes
    from llmtally.exporter.price import Pricer
    from llmtally.exporter.receive.decode import parse
    from llmtally.exporter.store import open_store

    bodies = build_requests(records)
    n = (len(bodies) - 1) * BATCH + len(parse("logs", bodies[-1]).resource_logs[0].scope_logs[0].log_records)
    steps: list[tuple[str, float]] = []

    def step(name: str, work: Callable[[], object]) -> Any:
        best, result = float("inf"), None
        for _ in range(5):
            started = time.thread_time()
            result = work()
            best = min(best, time.thread_time() - started)
        steps.append((name, best / n * 1e6))
        return result

    messages = step("protobuf parse", lambda: [parse("logs", b) for b in bodies])
    logs = [log for m in messages for log in m.resource_logs[0].scope_logs[0].log_records]
    # What the protobuf runtime alone costs (the floor of any reading of the attributes through it): wrapping each
    # KeyValue, then also reading its key and its value's string field.
    step(
        "attributes: iterating the KeyValues only (protobuf floor)",
        lambda: [[kv for kv in log.attributes] for log in logs],
    )
    step(
        "attributes: iterating + key + value + string field",
        lambda: [[(kv.key, kv.value.string_value) for kv in log.attributes] for log in logs],
    )
    attrs = step("attributes -> dict (upb reads)", lambda: [attributes(log.attributes) for log in logs])
    step("attributes -> Record", lambda: [to_record(a, record_id="x", start_ns=1, end_ns=2, source="s") for a in attrs])
    found = step("whole normalise (the two above, checks, ids)", lambda: [otlp.from_logs(m) for m in messages])
    recs = [r for f in found for r in f.records]
    pricer = Pricer()
    step("price", lambda: [pricer.price(r) for r in recs])
    step("check values", lambda: [check(r) for r in recs])
    step(
        "to and from a worker (pickled tuples)",
        lambda: [Record(*v) for v in pickle.loads(pickle.dumps([as_values(r) for r in recs], 5))],
    )
    step("metrics (completion_* families)", lambda: Metrics(10_000).records.observe(recs))
    with tempfile.TemporaryDirectory() as tmp:
        stores = iter([open_store(f"sqlite:///{tmp}/{i}.db") for i in range(5)])

        def write() -> None:
            store = next(stores)
            for i in range(0, len(recs), 8192):
                store.write(recs[i : i + 8192])
            store.close()

        step("SQLite write, groups of 8192 (records, rollups)", write)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--pg", help="also run into this PostgreSQL DSN")
    parser.add_argument("--workers", type=int, nargs="+", help="serve --workers values to run (default: its default)")
    parser.add_argument("--breakdown", action="store_true", help="CPU per record of each ingest step, in this process")
    args = parser.parse_args()
    if args.breakdown:
        print("| step | CPU µs per record |")
        print("| --- | ---: |")
        for name, us in breakdown(args.records):
            print(f"| {name} | {us:.1f} |")
        return
    with tempfile.TemporaryDirectory() as tmp:
        targets = [("sqlite", "")]  # a new SQLite file per run
        if args.pg:
            targets.append(("postgresql", args.pg))
        print(
            "| store | workers | records | seconds | records/s | records per transaction "
            "| CPU per record: receiver / workers (µs) "
            "| receiver RSS first / median / max / last (MiB) |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
        for name, store in targets:
            for workers in args.workers or [None]:
                if name == "sqlite":
                    store = f"sqlite:///{tempfile.mkdtemp(dir=tmp)}/bench.db"
                r = run(store, args.records, args.senders, workers)
                keys = ("rss_first_mib", "rss_median_mib", "rss_max_mib", "rss_last_mib")
                rss = " / ".join(f"{r[k]:.0f}" for k in keys)
                cpu = f"{r['receiver_cpu_us_per_record']:.0f} / {r['workers_cpu_us_per_record']:.0f}"
                shown = "default" if workers is None else workers
                print(
                    f"| {name} | {shown} | {r['stored']:.0f} | {r['seconds']:.1f} | {r['records_per_second']:,.0f} "
                    f"| {r['records_per_transaction']:,.0f} "
                    f"| {cpu} | {rss} |"
                )


if __name__ == "__main__":
    main()
