"""What llmtally's botocore hook costs the AWS calls it does not record: S3 and STS through the real boto3.

``python bench/botocore_overhead.py [--calls 300] [--blocks 8] [--warmup 50] [--json PATH]``

A small local server (its own process, so it does not share the client's GIL) answers S3 ListBuckets and GetObject
and STS GetCallerIdentity with minimal AWS XML. The same boto3 clients call it with the hook off (`none`: not
instrumented) and on (`llmtally`: `llmtally.instrument(hooks=("botocore",))`), in interleaved blocks (the order
alternating each block), so drift hits both alike. Per call: CPU time of the calling thread (`thread_time_ns`);
each variant's figure is the median of its least disturbed block (the lowest block median). It prints, per
operation, both figures, the difference and their ratio, then the hook's own pass-through cost timed in a tight loop
(the real wrapper around a method that does nothing, against the bare method), and the number of requests the
server answered per operation. A benchmark, not a test: it never fails on a number.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import statistics
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

OPERATIONS = ("s3.list_buckets", "s3.get_object", "sts.get_caller_identity")
VARIANTS = ("none", "llmtally")
_LIST_BUCKETS = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Owner><ID>bench</ID><DisplayName>bench</DisplayName></Owner>"
    b"<Buckets><Bucket><Name>bench</Name><CreationDate>2026-01-01T00:00:00.000Z</CreationDate></Bucket></Buckets>"
    b"</ListAllMyBucketsResult>"
)
_CALLER = (
    b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>'
    b"<Arn>arn:aws:iam::123456789012:user/bench</Arn><UserId>AIDABENCH</UserId><Account>123456789012</Account>"
    b"</GetCallerIdentityResult><ResponseMetadata><RequestId>bench</RequestId></ResponseMetadata>"
    b"</GetCallerIdentityResponse>"
)
_OBJECT = b"x" * 256


# --- the local AWS server ------------------------------------------------------------------------------------------


def _serve(port_out: Any) -> None:
    counts: Counter[str] = Counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, body: bytes, content_type: str = "application/xml") -> None:
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.send_header("x-amz-request-id", "bench")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/_counts":
                self._answer(json.dumps(counts).encode(), "application/json")
            elif self.path.split("?", 1)[0] == "/":
                counts["s3.list_buckets"] += 1
                self._answer(_LIST_BUCKETS)
            else:
                counts["s3.get_object"] += 1
                self._answer(_OBJECT, "application/octet-stream")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if b"Action=GetCallerIdentity" in body:
                counts["sts.get_caller_identity"] += 1
                self._answer(_CALLER, "text/xml")
            else:
                self.send_response(400)
                self.send_header("content-length", "0")
                self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_out.put(server.server_address[1])
    server.serve_forever()


def start_server() -> tuple[Any, str]:
    """The server process and its base URL."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_serve, args=(queue,), daemon=True)
    process.start()
    return process, f"http://127.0.0.1:{queue.get(timeout=30)}"


def server_counts(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/_counts", timeout=10) as answer:
        return dict(json.loads(answer.read()))


# --- the calls -------------------------------------------------------------------------------------------------------


def make_calls(url: str) -> dict[str, Callable[[], Any]]:
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {
        "endpoint_url": url,
        "region_name": "us-east-1",
        "aws_access_key_id": "AKIABENCH00000000000",
        "aws_secret_access_key": "bench-secret",
        "config": Config(retries={"mode": "standard", "max_attempts": 0}, s3={"addressing_style": "path"}),
    }
    s3 = boto3.client("s3", **options)
    sts = boto3.client("sts", **options)
    return {
        "s3.list_buckets": s3.list_buckets,
        "s3.get_object": lambda: s3.get_object(Bucket="bench", Key="object")["Body"].read(),
        "sts.get_caller_identity": sts.get_caller_identity,
    }


def set_variant(variant: str) -> None:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    import llmtally

    llmtally.uninstrument()
    if variant == "llmtally":
        llmtally.instrument(
            hooks=("botocore",),
            tracer_provider=TracerProvider(),
            meter_provider=MeterProvider(),
            logger_provider=LoggerProvider(),
        )


def block(call: Callable[[], Any], n: int) -> float:
    """The median thread CPU per call (µs) of `n` calls."""
    gc.collect()
    clock = time.thread_time_ns
    times: list[int] = []
    for _ in range(n):
        start = clock()
        call()
        times.append(clock() - start)
    return statistics.median(times) / 1000


def wrapper_floor(loops: int = 200_000) -> tuple[float, float]:
    """(bare, hooked) ns per call of a `_make_api_call` that does nothing, called as botocore calls it, bare and with
    the hook installed in its place (the hook's real code): what an unrecorded AWS call pays before botocore runs."""
    from llmtally.instrumentation.botocore import hook

    class Client:
        def _make_api_call(self, operation_name: str, api_params: dict[str, Any]) -> None:
            return None

    bare = Client()
    hooked = type("Hooked", (), {"_make_api_call": hook.patched(Client._make_api_call)})()
    results = []
    for target in (bare, hooked):
        best = float("inf")
        for _ in range(5):
            start = time.thread_time_ns()
            for _ in range(loops):
                target._make_api_call("ListBuckets", {})
            best = min(best, (time.thread_time_ns() - start) / loops)
        results.append(best)
    return results[0], results[1]


def run(calls: int, blocks: int, warmup: int) -> dict[str, Any]:
    process, url = start_server()
    try:
        targets = make_calls(url)
        medians: dict[str, dict[str, list[float]]] = {v: {op: [] for op in OPERATIONS} for v in VARIANTS}
        for variant in VARIANTS:
            set_variant(variant)
            for call in targets.values():
                for _ in range(warmup):
                    call()
        for index in range(blocks):
            for variant in VARIANTS if index % 2 == 0 else VARIANTS[::-1]:
                set_variant(variant)
                for op, call in targets.items():
                    medians[variant][op].append(block(call, calls))
        set_variant("none")
        bare_ns, hooked_ns = wrapper_floor()
        answered = server_counts(url)
    finally:
        process.terminate()
        process.join(10)
    return {
        "calls_per_block": calls,
        "blocks": blocks,
        "warmup": warmup,
        "block_medians_us": medians,
        "cpu_us": {v: {op: min(m) for op, m in ops.items()} for v, ops in medians.items()},
        "wrapper_floor_ns": {"bare": bare_ns, "hooked": hooked_ns},
        "answered": answered,
        "expected_per_operation": (warmup + blocks * calls) * len(VARIANTS),
    }


def report(result: dict[str, Any]) -> str:
    cpu = result["cpu_us"]
    lines = [
        f"botocore hook overhead on unrecorded AWS calls ({result['blocks']} blocks of {result['calls_per_block']} "
        f"calls per variant and operation, Python {sys.version.split()[0]})",
        "",
        "| operation | none (µs CPU/call) | llmtally (µs CPU/call) | difference (µs) | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for op in OPERATIONS:
        base, hooked = cpu["none"][op], cpu["llmtally"][op]
        lines.append(f"| {op} | {base:.1f} | {hooked:.1f} | {hooked - base:+.1f} | {hooked / base:.3f} |")
    floor = result["wrapper_floor_ns"]
    lines += [
        "",
        f"hook pass-through, tight loop: bare {floor['bare']:.0f} ns, hooked {floor['hooked']:.0f} ns per call "
        f"(+{floor['hooked'] - floor['bare']:.0f} ns)",
        "",
        "requests answered: "
        + ", ".join(f"{op} {result['answered'].get(op, 0)}" for op in OPERATIONS)
        + f" (expected {result['expected_per_operation']} each)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=300, help="calls per block, variant and operation")
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=50, help="calls per variant and operation before measuring")
    parser.add_argument("--json", type=Path, help="also write the full figures there")
    args = parser.parse_args(argv)
    result = run(args.calls, args.blocks, args.warmup)
    print(report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
