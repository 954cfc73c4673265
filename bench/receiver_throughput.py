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
from pathlib import Path

import grpc
import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

BATCH = 512
MODELS = ("gpt-4o-mini", "gpt-4.1", "claude-haiku-4-5", "claude-sonnet-4-5", "o4-mini", "text-embedding-3-small")
EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


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
                    attributes=[_kv(k, v) for k, v in attrs.items()],
                )
            )
        request = ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=logs)])])
        request.resource_logs[0].resource.attributes.append(_kv("service.name", "bench"))
        out.append(request.SerializeToString())
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(store: str, records: int, senders: int) -> dict[str, float]:
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

        def send(part: list[bytes]) -> None:
            for body in part:
                export(body, timeout=120)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        threads = [threading.Thread(target=send, args=(requests[i::senders],)) for i in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
        metrics = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=30).text
        stored = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("llmtally_receiver_records_stored_total")
        )
        new = stored - len(warm) * BATCH
        return {
            "records": float(records),
            "stored": new,
            "seconds": elapsed,
            "records_per_second": new / elapsed,
            "rss_first_mib": memory[0] if memory else 0.0,
            "rss_max_mib": max(memory) if memory else 0.0,
            "rss_last_mib": memory[-1] if memory else 0.0,
            "rss_median_mib": statistics.median(memory) if memory else 0.0,
        }
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--pg", help="also run into this PostgreSQL DSN")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        targets = [("sqlite", f"sqlite:///{tmp}/bench.db")]
        if args.pg:
            targets.append(("postgresql", args.pg))
        print("| store | records | seconds | records/s | receiver RSS first / median / max / last (MiB) |")
        print("| --- | ---: | ---: | ---: | --- |")
        for name, store in targets:
            r = run(store, args.records, args.senders)
            rss = " / ".join(f"{r[k]:.0f}" for k in ("rss_first_mib", "rss_median_mib", "rss_max_mib", "rss_last_mib"))
            print(f"| {name} | {r['stored']:.0f} | {r['seconds']:.1f} | {r['records_per_second']:,.0f} | {rss} |")


if __name__ == "__main__":
    main()
