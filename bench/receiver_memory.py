"""The receiver's memory under a flood of maximal export requests over both transports (a benchmark, not a test).

``python bench/receiver_memory.py [--seconds 30] [--senders 24] [--max-request-mib 8] [--grpc-slots 8]
[--http-slots 8] [--queue-records 100000] [--workers N] [--kinds ...] [--json]`` starts `llmtally serve` (SQLite in
a temporary directory) with those settings and floods it for `--seconds` from `--senders` threads per transport,
each sending in turn every kind of body below (or the `--kinds` named) and sending again as soon as it is answered,
whatever the answer:

- gRPC: valid logs requests just under `max_request_bytes` of three kinds of record: llmtally audit events as the
  instrumentation emits them (~36 attributes, ~1.2 KB each: `grpc`), the smallest records the receiver accepts (~75
  bytes: the most records per byte, `grpc-tiny`) and records carrying a 16 KiB prompt and completion (`grpc-heavy`);
  and a message of twice the limit (`grpc-too-large`);
- OTLP/HTTP: the same three as protobuf (`protobuf`, `tiny`, `heavy`), the first as OTLP/JSON (`json`) and gzipped
  (`gzip`); a gzip bomb (a few hundred KiB that inflate to 64 times the limit); a body of 64 MiB with its
  Content-Length (`too-large`) and streamed without one (`too-large-streamed`).

The resident memory (VmRSS) of the receiving process and of each worker process is sampled every 20 ms from /proc,
and printed with the documented bound for these settings (docs/receiver.md, "Memory"): `bound_mib` for the
receiving process, `worker_bound_mib` for each worker.
"""

from __future__ import annotations

import argparse
import base64
import collections
import gzip
import json
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import yaml
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common._internal import _encode_key_value
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from receiver_throughput import BATCH, EXPORT, _free_port, build_requests

MIB = 1024 * 1024
TOO_LARGE_MIB = 64  # the bodies past the limit: what a receiver that read them whole would hold, per request
# The documented bound (docs/receiver.md, "Memory"), in MiB. The receiving process: BASE (the process at rest, ~80
# MiB, and what grows under any load: the threads' allocator arenas, gRPC's and uvicorn's buffers), plus for each
# request in flight PER_REQUEST x max_request_bytes (its body; a copy of it while it is read, inflated or handed to a
# worker; the text of its records; the allocator's slack), plus PER_QUEUED_RECORD for each record waiting to be
# stored. A worker process: WORKER_BASE plus WORKER_PER_BODY x max_request_bytes (the request it prepares: parsed,
# normalised, priced, pickled back; most for a body of the smallest records, or OTLP/JSON).
BASE_MIB = 150
PER_REQUEST = 5
PER_QUEUED_RECORD_KIB = 2
WORKER_BASE_MIB = 100
WORKER_PER_BODY = 32


def bound_mib(max_request_bytes: int, grpc_slots: int, http_slots: int, queue_records: int) -> float:
    """The documented bound on the receiving process's resident memory for these settings, in MiB."""
    in_flight = (grpc_slots + http_slots) * PER_REQUEST * max_request_bytes / MIB
    return BASE_MIB + in_flight + queue_records * PER_QUEUED_RECORD_KIB / 1024


def worker_bound_mib(max_request_bytes: int) -> float:
    """The documented bound on one worker process's resident memory, in MiB."""
    return WORKER_BASE_MIB + WORKER_PER_BODY * max_request_bytes / MIB


def maximal_protobuf(limit: int) -> bytes:
    """A valid logs export request of llmtally audit events, as large as fits under `limit` bytes: batches of
    BATCH records concatenated (protobuf merges them into one request)."""
    batch = build_requests(BATCH)[0]
    count = max(1, int(limit * 0.95) // len(batch))
    return b"".join(build_requests(BATCH * count))


def maximal_tiny(limit: int) -> bytes:
    """A valid logs request as large as fits under `limit` bytes of the smallest records the receiver accepts (an
    audit event with a time and a model: ~75 bytes each, the most records per byte). A thousand model names: the
    store's matching of records to calls compares records of one model with each other."""
    models = [_encode_key_value("gen_ai.request.model", f"m{n}") for n in range(1000)]
    count = int(limit * 0.95) // 75
    logs = [
        LogRecord(
            event_name="llmtally.completion",
            time_unix_nano=time.time_ns(),
            span_id=(2**40 + i).to_bytes(8, "big"),
            attributes=[models[i % 1000]],
        )
        for i in range(count)
    ]
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=logs)])]
    ).SerializeToString()


def maximal_heavy(limit: int) -> bytes:
    """A valid logs request as large as fits under `limit` bytes of records carrying a captured prompt and completion
    of 16 KiB each (the instrumentation's default cap): the most bytes per record."""
    text = "lorem ipsum " * 1365
    attrs = [
        _encode_key_value(k, v)
        for k, v in {
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.provider.name": "openai",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20,
            "gen_ai.input.messages": text,
            "gen_ai.output.messages": text,
        }.items()
    ]
    count = max(1, int(limit * 0.95) // (2 * len(text) + 200))
    logs = [
        LogRecord(
            event_name="llmtally.completion",
            time_unix_nano=time.time_ns(),
            span_id=(10**9 + i).to_bytes(8, "big"),
            attributes=attrs,
        )
        for i in range(count)
    ]
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=logs)])]
    ).SerializeToString()


def maximal_json(limit: int) -> bytes:
    """The same records as OTLP/JSON (trace and span ids in hex), as many as fit under `limit` bytes."""
    data = json_format.MessageToDict(ExportLogsServiceRequest.FromString(maximal_protobuf(limit)))
    records = [record for resource in data["resourceLogs"] for record in resource["scopeLogs"][0]["logRecords"]]
    for record in records:
        for key in ("traceId", "spanId"):
            record[key] = base64.b64decode(record[key]).hex()
    resource = data["resourceLogs"][0]
    data["resourceLogs"] = [resource]
    while True:
        resource["scopeLogs"][0]["logRecords"] = records
        body = json.dumps(data).encode()
        if len(body) <= limit:
            return body
        records = records[: int(len(records) * limit * 0.95 / len(body))]


def gzip_bomb(inflated: int) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    return b"".join([*(squeeze.compress(zeros) for _ in range(inflated // MIB)), squeeze.flush()])


def streamed(size: int) -> Iterator[bytes]:
    """A body of `size` bytes sent in 1 MiB chunks, with no Content-Length (chunked)."""
    chunk = bytes(MIB)
    for _ in range(size // MIB):
        yield chunk


class Receiver:
    """`llmtally serve` with the settings given, as a subprocess; stopped by PID."""

    def __init__(self, workdir: Path, receiver: dict[str, Any]) -> None:
        self.grpc_port, self.http_port = _free_port(), _free_port()
        config = {
            "store": f"sqlite:///{workdir}/bench.db",
            "receiver": {"otlp_grpc": f"127.0.0.1:{self.grpc_port}", "http": f"127.0.0.1:{self.http_port}", **receiver},
        }
        path = workdir / "llmtally.yaml"
        path.write_text(yaml.safe_dump(config))
        llmtally = str(Path(sys.executable).with_name("llmtally"))
        self.log = (workdir / "serve.log").open("wb")
        command = [llmtally, "serve", "--config", str(path)]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.http_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"llmtally serve did not start: {(workdir / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def workers(self) -> list[int]:
        pid = self.process.pid
        try:
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def stop(self) -> int:
        """SIGTERM (it stores what it queued), SIGKILL after two minutes; the exit code."""
        self.process.terminate()
        try:
            code = self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.log.close()
        return code


def _memory_mib(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon (the heap: what could run out) and RssFile (files mapped: the SQLite store's memory map, clean
    pages the kernel may drop) of process `pid`, in MiB."""
    found = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                found[name] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return found


class Sampler:
    """The peak VmRSS of the receiving process (with its RssAnon and RssFile then) and of each of its workers,
    sampled every 20 ms on a thread."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.first = _memory_mib(receiver.process.pid)
        self.peak = dict(self.first)
        self.anon_peak = self.first.get("RssAnon", 0.0)
        self.worker_peak = 0.0
        self.total_peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            main = _memory_mib(self.receiver.process.pid)
            workers = [_memory_mib(pid).get("VmRSS", 0.0) for pid in self.receiver.workers()]
            if main.get("VmRSS", 0.0) > self.peak.get("VmRSS", 0.0):
                self.peak = main
            self.anon_peak = max(self.anon_peak, main.get("RssAnon", 0.0))
            self.worker_peak = max([self.worker_peak, *workers])
            self.total_peak = max(self.total_peak, main.get("VmRSS", 0.0) + sum(workers))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


_BUSY = ("429", "503", "RESOURCE_EXHAUSTED", "UNAVAILABLE")


def flood(
    receiver: Receiver,
    seconds: float,
    senders: int,
    limit: int,
    kinds: set[str] | None = None,
    until_answered: float = 0,
) -> collections.Counter[str]:
    """Sends every kind of body (or those named in `kinds`) from `senders` threads per transport for `seconds`; the
    answers, counted. With `until_answered`, goes on (up to that many seconds in all) until every kind has had an
    answer other than busy, so that a short run on a loaded machine still takes every path."""
    valid, as_json = maximal_protobuf(limit), maximal_json(limit)
    tiny, heavy = maximal_tiny(limit), maximal_heavy(limit)
    zipped, bomb = gzip.compress(valid, 1), gzip_bomb(64 * limit)
    huge = bytes(TOO_LARGE_MIB * MIB)
    proto = {"content-type": "application/x-protobuf"}
    logs = f"{receiver.url}/v1/logs"
    http_kinds: list[tuple[str, Callable[[], Any], dict[str, str]]] = [
        ("protobuf", lambda: valid, proto),
        ("tiny", lambda: tiny, proto),
        ("heavy", lambda: heavy, proto),
        ("json", lambda: as_json, {"content-type": "application/json"}),
        ("gzip", lambda: zipped, {**proto, "content-encoding": "gzip"}),
        ("gzip-bomb", lambda: bomb, {**proto, "content-encoding": "gzip"}),
        ("too-large", lambda: huge, proto),
        ("too-large-streamed", lambda: streamed(TOO_LARGE_MIB * MIB), proto),
    ]
    grpc_kinds = [("grpc", valid), ("grpc-tiny", tiny), ("grpc-heavy", heavy), ("grpc-too-large", bytes(2 * limit))]
    if kinds is not None:
        http_kinds = [kind for kind in http_kinds if kind[0] in kinds]
        grpc_kinds = [kind for kind in grpc_kinds if kind[0] in kinds]
    answers: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    started = time.monotonic()
    # gRPC answers a message past its size with RESOURCE_EXHAUSTED, as it answers busy: that kind is not waited for.
    names = [kind[0] for kind in http_kinds] + [kind[0] for kind in grpc_kinds if kind[0] != "grpc-too-large"]

    def going() -> bool:
        took = time.monotonic() - started
        if took < seconds:
            return True
        if took >= until_answered:
            return False
        with lock:
            answered = {k.rsplit(" ", 1)[0] for k, n in answers.items() if n and not k.endswith(_BUSY)}
        return not answered.issuperset(names)

    def count(kind: str, answer: str) -> None:
        with lock:
            answers[f"{kind} {answer}"] += 1

    def http_sender(n: int) -> None:
        with httpx.Client(timeout=120) as client:
            while going():
                kind, body, headers = http_kinds[n % len(http_kinds)]
                n += 1
                try:
                    count(kind, str(client.post(logs, content=body(), headers=headers).status_code))
                except httpx.HTTPError as error:
                    count(kind, type(error).__name__)

    def grpc_sender(n: int) -> None:
        options = [("grpc.max_send_message_length", -1)]
        with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}", options=options) as channel:
            export = channel.unary_unary(EXPORT)
            while going():
                kind, body = grpc_kinds[n % len(grpc_kinds)]
                n += 1
                try:
                    export(body, timeout=120)
                    count(kind, "OK")
                except grpc.RpcError as error:
                    count(kind, error.code().name)

    threads = [threading.Thread(target=http_sender, args=(i,)) for i in range(senders if http_kinds else 0)]
    threads += [threading.Thread(target=grpc_sender, args=(i,)) for i in range(senders if grpc_kinds else 0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def run(
    seconds: float,
    senders: int,
    settings: dict[str, Any],
    kinds: set[str] | None = None,
    until_answered: float = 0,
) -> dict[str, Any]:
    """One flood against a new receiver with `settings` (its llmtally.yaml `receiver:` keys); the figures."""
    limit = settings["max_request_bytes"]
    with tempfile.TemporaryDirectory() as tmp:
        receiver = Receiver(Path(tmp), settings)
        try:
            with Sampler(receiver) as sampler:
                started = time.monotonic()
                answers = flood(receiver, seconds, senders, limit, kinds, until_answered)
                took = time.monotonic() - started
            metrics = httpx.get(f"{receiver.url}/metrics", timeout=30).text
        finally:
            code = receiver.stop()
    refused = {
        line.split('reason="')[1].split('"')[0]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("llmtally_receiver_refused_requests_total{")
    }
    return {
        "settings": settings,
        "senders_per_transport": senders,
        "seconds": round(took, 1),
        "answers": dict(sorted(answers.items())),
        "refused": refused,
        "rss_first_mib": round(sampler.first.get("VmRSS", 0.0), 1),
        "rss_peak_mib": round(sampler.peak.get("VmRSS", 0.0), 1),
        "file_at_peak_mib": round(sampler.peak.get("RssFile", 0.0), 1),
        "anon_peak_mib": round(sampler.anon_peak, 1),
        "bound_mib": round(
            bound_mib(
                limit,
                settings["max_concurrent_grpc_requests"],
                settings["max_concurrent_http_requests"],
                settings["queue_records"],
            ),
            1,
        ),
        "worker_rss_peak_mib": round(sampler.worker_peak, 1),
        "worker_bound_mib": round(worker_bound_mib(limit), 1),
        "all_processes_peak_mib": round(sampler.total_peak, 1),
        "exit_code": code,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--senders", type=int, default=24, help="threads per transport")
    parser.add_argument("--max-request-mib", type=float, default=8)
    parser.add_argument("--grpc-slots", type=int, default=8)
    parser.add_argument("--http-slots", type=int, default=8)
    parser.add_argument("--queue-records", type=int, default=100_000)
    parser.add_argument("--workers", type=int, help="worker processes (default: serve's, one per CPU)")
    parser.add_argument("--kinds", nargs="+", help="only these kinds of body (default: all; names as in the answers)")
    parser.add_argument(
        "--until-answered",
        type=float,
        default=0,
        metavar="SECONDS",
        help="go on past --seconds (up to this many in all) until every kind had an answer other than busy",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = parser.parse_args(argv)
    settings: dict[str, Any] = {
        "max_request_bytes": int(args.max_request_mib * MIB),
        "max_concurrent_grpc_requests": args.grpc_slots,
        "max_concurrent_http_requests": args.http_slots,
        "queue_records": args.queue_records,
        **({"workers": args.workers} if args.workers is not None else {}),
    }
    figures = run(args.seconds, args.senders, settings, set(args.kinds) if args.kinds else None, args.until_answered)
    if args.json:
        print(json.dumps(figures))
        return
    print(
        "| receiver RSS first / peak (MiB) | of it, files mapped | heap (RssAnon) peak | bound | worker peak "
        "| worker bound | all processes peak |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {figures['rss_first_mib']:.0f} / {figures['rss_peak_mib']:.0f} | {figures['file_at_peak_mib']:.0f} "
        f"| {figures['anon_peak_mib']:.0f} | {figures['bound_mib']:.0f} "
        f"| {figures['worker_rss_peak_mib']:.0f} | {figures['worker_bound_mib']:.0f} "
        f"| {figures['all_processes_peak_mib']:.0f} |"
    )
    print()
    print("answers:", ", ".join(f"{k}: {v}" for k, v in figures["answers"].items()))
    print("refused (llmtally_receiver_refused_requests_total):", figures["refused"])


if __name__ == "__main__":
    main()
