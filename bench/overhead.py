"""Per-call overhead of LLM instrumentations on the real openai, google-genai and boto3 SDKs, over real HTTP.

``python bench/overhead.py [--quick]`` starts the fake provider in its own process (and, for the ``s3`` scenario,
``bench/botocore_overhead.py``'s local AWS XML server in another), then runs every variant (``none``, ``llmtally``,
``otel-genai-openai``, ``openllmetry``) in a fresh subprocess, interleaved over several rounds, and reports per-call
CPU time (calling thread and whole process, each the least disturbed of several blocks of calls) and wall time, the
overhead over ``none`` and the ratio of llmtally's overhead to each peer's, per scenario: openai ``non-stream`` and
``stream``, google-genai ``gemini`` (``models.generate_content``) and boto3 ``s3`` (``list_buckets``, an AWS call
that is not Bedrock). ``--scenarios`` picks some of them. Each variant turns on, in the same process, what it has for
each SDK: llmtally all of its hooks; the official OpenTelemetry variant its openai, google-genai and botocore
instrumentations; OpenLLMetry its openai, google-generativeai and bedrock ones.
Markdown goes to stdout, JSON to ``bench/results/overhead.json``. ``--variants none llmtally llmtally-no-span ...``
adds llmtally with one piece of its hot path turned into a no-op, for the breakdown.
``--variants ... sdk-floor`` adds a variant that is not instrumented but sends llmtally's span and audit event of each
call straight through the SDK, and times that sending alone in a tight loop: the OpenTelemetry SDK's own share.
``--profile VARIANT`` instead prints a cProfile of that variant's measured calls (top functions by tottime).
The telemetry table also gives the CPU of the one metric collection at the end, per call: llmtally records its
histograms there (queued by each call), so that work is in neither CPU column of the scenario tables.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "overhead.json"
VARIANTS = ("none", "llmtally", "otel-genai-openai", "openllmetry")
# Opt-in (--variants): llmtally without include_usage on streams, and llmtally with one piece of its hot path
# replaced by a no-op (the breakdown: the piece costs what its removal saves).
ABLATIONS = ("span", "audit-event", "metrics", "body-reading")
# `sdk-floor`: no instrumentation, but each call also sends llmtally's span and audit event of that scenario (captured
# from one instrumented call) through the pipeline: what the OpenTelemetry SDK alone costs for that telemetry.
EXTRA_VARIANTS = ("llmtally-no-stream-usage", *(f"llmtally-no-{piece}" for piece in ABLATIONS), "sdk-floor")
PEERS = ("otel-genai-openai", "openllmetry")
SCENARIOS = ("non-stream", "stream", "gemini", "s3")
OPENAI_SCENARIOS = ("non-stream", "stream")
STREAM_CHUNKS = 50
MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hello."}]
GEMINI_MODEL = "gemini-2.5-flash"
GEMINI_CONTENTS = "Say hello."
# What each peer variant turns on, in this order, in one process: (SDK, distribution, module, instrumentor class).
# The official botocore instrumentation traces every AWS call (S3 included); OpenLLMetry's bedrock one wraps client
# creation and patches only `bedrock-runtime` clients.
PEER_INSTRUMENTORS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "otel-genai-openai": (
        (
            "openai",
            "opentelemetry-instrumentation-genai-openai",
            "opentelemetry.instrumentation.genai.openai",
            "OpenAIInstrumentor",
        ),
        (
            "google-genai",
            "opentelemetry-instrumentation-google-genai",
            "opentelemetry.instrumentation.google_genai",
            "GoogleGenAiSdkInstrumentor",
        ),
        (
            "boto3",
            "opentelemetry-instrumentation-botocore",
            "opentelemetry.instrumentation.botocore",
            "BotocoreInstrumentor",
        ),
    ),
    "openllmetry": (
        (
            "openai",
            "opentelemetry-instrumentation-openai",
            "opentelemetry.instrumentation.openai",
            "OpenAIInstrumentor",
        ),
        (
            "google-genai",
            "opentelemetry-instrumentation-google-generativeai",
            "opentelemetry.instrumentation.google_generativeai",
            "GoogleGenerativeAiInstrumentor",
        ),
        (
            "boto3",
            "opentelemetry-instrumentation-bedrock",
            "opentelemetry.instrumentation.bedrock",
            "BedrockInstrumentor",
        ),
    ),
}

# The official google-genai instrumentor sets this to "true" process-wide when it is turned on (so that its calls emit
# a log record), and the official openai instrumentation reads it too, at each call (both through
# opentelemetry-util-genai): in one process it would add a log record to every openai call. The worker runs the openai
# scenarios with it as it was before instrumenting (as in the runs before these scenarios existed), the others with it
# as the instrumentors left it.
GENAI_EMIT_EVENT = "OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT"

_USAGE_KEY = "input_tokens"  # gen_ai.usage.input_tokens: a span that carries token usage


# --- worker: one variant in one fresh process ------------------------------------------------------------


class _Pipeline:
    """The same OTel SDK pipeline for every variant: batch processors into counting, dropping exporters."""

    def __init__(self) -> None:
        from opentelemetry import _logs, metrics, trace
        from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        pipeline = self
        self.spans = 0
        self.spans_with_usage = 0
        self.logs = 0
        self.span_names: dict[str, int] = {}
        self.log_events: dict[str, int] = {}

        class SpanCounter(SpanExporter):
            def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
                pipeline.spans += len(spans)
                for span in spans:
                    pipeline.span_names[span.name] = pipeline.span_names.get(span.name, 0) + 1
                    if any(_USAGE_KEY in key for key in span.attributes or ()):
                        pipeline.spans_with_usage += 1
                return SpanExportResult.SUCCESS

        class LogCounter(LogRecordExporter):
            def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
                pipeline.logs += len(batch)
                for record in batch:
                    name = str(getattr(record.log_record, "event_name", None) or "-")
                    pipeline.log_events[name] = pipeline.log_events.get(name, 0) + 1
                return LogRecordExportResult.SUCCESS

            def force_flush(self, timeout_millis: int = 30000) -> bool:
                return True

            def shutdown(self) -> None:
                """Nothing to release."""

        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(BatchSpanProcessor(SpanCounter()))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.logger_provider = LoggerProvider()
        self.logger_provider.add_log_record_processor(BatchLogRecordProcessor(LogCounter()))
        trace.set_tracer_provider(self.tracer_provider)
        metrics.set_meter_provider(self.meter_provider)
        _logs.set_logger_provider(self.logger_provider)

    def providers(self) -> dict[str, Any]:
        """Keyword arguments handing the providers to an instrumentor explicitly."""
        return {
            "tracer_provider": self.tracer_provider,
            "meter_provider": self.meter_provider,
            "logger_provider": self.logger_provider,
        }

    def counted(self) -> dict[str, Any]:
        """Flush spans and logs, and return what was counted so far (for the difference over one scenario)."""
        self.tracer_provider.force_flush()
        self.logger_provider.force_flush()
        return {
            "spans": self.spans,
            "spans_with_usage": self.spans_with_usage,
            "logs": self.logs,
            "span_names": dict(self.span_names),
        }

    def finish(self) -> dict[str, Any]:
        """Flush spans and logs, collect the metrics once, and count what was produced."""
        self.tracer_provider.force_flush()
        self.logger_provider.force_flush()
        cpu0 = time.thread_time_ns()
        data = self.reader.get_metrics_data()  # llmtally records its queued histogram measurements here
        collect_ns = time.thread_time_ns() - cpu0
        points: dict[str, int] = {}
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    points[metric.name] = points.get(metric.name, 0) + len(list(metric.data.data_points))
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()
        return {
            "spans": self.spans,
            "spans_with_usage": self.spans_with_usage,
            "span_names": self.span_names,
            "logs": self.logs,
            "log_events": self.log_events,
            "metric_points": points,
            "collect_cpu_us": collect_ns / 1000,
        }


def _instrument(variant: str, pipeline: _Pipeline) -> dict[str, Any]:
    """Turn on one variant's instrumentation; returns how it went: per instrumentor, what it hooks and its
    dependency check (passed, refused then skip_dep_check, missing, or failed). Never raises for a peer."""
    info: dict[str, Any] = {"variant": variant}
    if variant in ("none", "sdk-floor"):
        return info
    from importlib.metadata import version

    if variant.startswith("llmtally"):
        import llmtally
        from llmtally.instrumentation import HOOKS, _instrumentors

        llmtally.instrument(**pipeline.providers(), stream_usage=variant != "llmtally-no-stream-usage")
        info["package"] = f"llmtally=={version('llmtally')}"
        info["instrumentors"] = [
            {
                "sdk": hook.name,
                "class": type(hook).__name__,
                "package": info["package"],
                "instruments": list(hook.instrumentation_dependencies()),
                "dep_check": "passed" if hook.is_instrumented_by_opentelemetry else "refused",
            }
            for hook in _instrumentors(HOOKS)
        ]
        piece = variant.removeprefix("llmtally-no-")
        if piece in ABLATIONS:
            _ablate(piece)
            info["ablated"] = piece
        return info
    if variant not in PEER_INSTRUMENTORS:
        raise SystemExit(f"unknown variant {variant!r}")
    emit_event = os.environ.get(GENAI_EMIT_EVENT)
    info["instrumentors"] = [
        _peer(sdk, package, module, name, pipeline) for sdk, package, module, name in PEER_INSTRUMENTORS[variant]
    ]
    info["package"] = ", ".join(i["package"] for i in info["instrumentors"])
    if os.environ.get(GENAI_EMIT_EVENT) != emit_event:
        info["emit_event_env"] = {"before": emit_event, "after": os.environ.get(GENAI_EMIT_EVENT)}
    return info


def _scenario_env(info: dict[str, Any], scenario: str) -> None:
    """Puts GENAI_EMIT_EVENT as it was before instrumenting for the openai scenarios, as the instrumentors left it
    for the others (only where an instrumentor changed it)."""
    env = info.get("emit_event_env")
    if not env:
        return
    value = env["before"] if scenario in OPENAI_SCENARIOS else env["after"]
    if value is None:
        os.environ.pop(GENAI_EMIT_EVENT, None)
    else:
        os.environ[GENAI_EMIT_EVENT] = value


def _peer(sdk: str, package: str, module: str, name: str, pipeline: _Pipeline) -> dict[str, Any]:
    """Turn on one peer instrumentor with the pipeline's providers; if its dependency check refuses, again with
    ``skip_dep_check=True``. A missing package or an instrumentor that raises is recorded, not raised."""
    import importlib
    from importlib.metadata import PackageNotFoundError, version

    entry: dict[str, Any] = {"sdk": sdk, "class": name, "package": package}
    try:
        entry["package"] = f"{package}=={version(package)}"
        instrumentor = getattr(importlib.import_module(module), name)()
    except (ImportError, PackageNotFoundError, AttributeError) as exc:
        entry["dep_check"] = f"missing ({type(exc).__name__})"
        return entry
    except Exception as exc:  # importing or constructing it broke
        entry["dep_check"] = "failed"
        entry["error"] = f"{type(exc).__name__}: {exc}"[:200]
        return entry
    try:
        entry["instruments"] = list(instrumentor.instrumentation_dependencies())
        instrumentor.instrument(**pipeline.providers())
        entry["dep_check"] = "passed" if instrumentor.is_instrumented_by_opentelemetry else "refused"
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(skip_dep_check=True, **pipeline.providers())
            entry["skip_dep_check"] = bool(instrumentor.is_instrumented_by_opentelemetry)
    except Exception as exc:  # a peer that breaks on this SDK version: say so, keep measuring the others
        entry["error"] = f"{type(exc).__name__}: {exc}"[:200]
        entry.setdefault("dep_check", "failed")
    return entry


class _NoTotals:
    def count(self, *args: Any) -> None:
        """Counts nothing."""

    def rate_limits(self, *args: Any) -> None:
        """Keeps nothing."""


def _ablate(piece: str) -> None:
    """Replaces one piece of llmtally's hot path by a no-op: the span (a no-op tracer), the audit event (a
    no-op logger), the metrics (no-op histograms and counter totals), or the reading of response bodies."""
    from opentelemetry import _logs, trace
    from opentelemetry.metrics import NoOpHistogram

    from llmtally.instrumentation import runtime
    from llmtally.instrumentation.reader import ResponseReader

    rt = runtime.get()
    assert rt is not None
    tel: Any = rt.telemetry
    if piece == "span":
        tel.tracer = trace.NoOpTracer()
    elif piece == "audit-event":
        tel.logger = _logs.NoOpLogger("ablated")
    elif piece == "metrics":
        for name in ("duration", "time_to_first_token", "operation_duration", "token_usage"):
            setattr(tel, name, NoOpHistogram(name))
        tel.histograms = lambda *args: None  # the deferred histogram records
        tel.totals = _NoTotals()
    elif piece == "body-reading":
        reader: Any = ResponseReader
        reader.read_body = lambda self, body, status: None
        reader.feed = lambda self, chunk: chunk
        reader.end_stream = lambda self, status: b""


def _calls(args: argparse.Namespace) -> tuple[dict[str, Callable[[], None]], list[Any]]:
    """One zero-argument callable per chosen scenario (the stream one consumes the whole stream), and the clients to
    close at the end. Each SDK is imported and its client built only when a scenario needs it, after instrumenting."""
    calls: dict[str, Callable[[], None]] = {}
    clients: list[Any] = []
    chosen = set(args.scenarios)
    if chosen & set(OPENAI_SCENARIOS):
        import openai

        client: Any = openai.OpenAI(base_url=f"{args.base_url}/v1", api_key="sk-fake", max_retries=0)
        clients.append(client)

        def non_stream() -> None:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)

        def stream() -> None:
            for _ in client.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True, extra_headers={"x-fake-chunks": str(STREAM_CHUNKS)}
            ):
                pass

        calls |= {"non-stream": non_stream, "stream": stream}
    if "gemini" in chosen:
        from google import genai
        from google.genai import types

        gemini = genai.Client(api_key="gemini-fake-key", http_options=types.HttpOptions(base_url=args.base_url))
        clients.append(gemini)

        def generate() -> None:
            gemini.models.generate_content(model=GEMINI_MODEL, contents=GEMINI_CONTENTS)

        calls["gemini"] = generate
    if "s3" in chosen:
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=args.aws_url,
            region_name="us-east-1",
            aws_access_key_id="AKIABENCH00000000000",
            aws_secret_access_key="bench-secret",
        )
        clients.append(s3)

        def list_buckets() -> None:
            s3.list_buckets()

        calls["s3"] = list_buckets
    return {k: calls[k] for k in args.scenarios}, clients


def _sdk_floor(
    pipeline: _Pipeline, calls: dict[str, Callable[[], None]]
) -> tuple[dict[str, Callable[[], None]], dict[str, Callable[[], None]]]:
    """Per scenario: the call followed by llmtally's span and audit event for it sent straight through the SDK, and
    that sending alone. The span and the event are captured from one call made with llmtally instrumented into
    in-memory exporters, then llmtally is turned off again. A scenario llmtally records nothing for (s3) is left as
    it is."""
    from importlib.metadata import version

    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import llmtally

    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    tracer_provider, logger_provider = TracerProvider(), LoggerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    tracer = pipeline.tracer_provider.get_tracer("llmtally", version("llmtally"))
    logger = pipeline.logger_provider.get_logger("llmtally", version("llmtally"))
    emits: dict[str, Callable[[], None]] = {}
    for scenario, call in calls.items():
        spans.clear()
        logs.clear()
        llmtally.instrument(
            tracer_provider=tracer_provider, logger_provider=logger_provider, meter_provider=MeterProvider()
        )
        call()
        llmtally.uninstrument()
        captured, events = spans.get_finished_spans(), logs.get_finished_logs()
        if not captured and not events:  # a call llmtally does not record (s3): nothing to send
            continue
        if len(captured) != 1 or len(events) != 1:
            raise SystemExit(
                f"sdk-floor: {scenario}: expected one span and one audit event from llmtally, "
                f"got {len(captured)} and {len(events)}"
            )
        (span,), (event,) = captured, events
        emits[scenario] = _sender(tracer, logger, span.name, dict(span.attributes or {}), event.log_record)

    def then_emit(call: Callable[[], None], emit: Callable[[], None]) -> Callable[[], None]:
        def both() -> None:
            call()
            emit()

        return both

    return {k: then_emit(calls[k], emits[k]) if k in emits else calls[k] for k in calls}, emits


def _sender(tracer: Any, logger: Any, name: str, span_attrs: dict[str, Any], event: Any) -> Callable[[], None]:
    """Sends one span named `name` with `span_attrs` and one log record like `event`, as llmtally does."""
    from opentelemetry import trace
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.trace import SpanKind

    event_name, event_attrs = event.event_name, dict(event.attributes or {})

    def send() -> None:
        span = tracer.start_span(name, kind=SpanKind.CLIENT)
        span.set_attributes(span_attrs)
        span.end()
        logger.emit(
            timestamp=time.time_ns(),
            context=trace.set_span_in_context(span),
            severity_number=SeverityNumber.INFO,
            event_name=event_name,
            attributes=event_attrs,
        )

    return send


TIGHT_LOOP = (15, 200)  # blocks, runs per block


def _tight_loop_us(work: Callable[[], None]) -> float:
    """Calling-thread CPU µs of one `work()`, the median of its least disturbed block of back-to-back runs."""
    blocks, n = TIGHT_LOOP
    best = float("inf")
    for _ in range(blocks):
        times = []
        for _ in range(n):
            c0 = time.thread_time_ns()
            work()
            times.append(time.thread_time_ns() - c0)
        best = min(best, statistics.median(times))
    return best / 1000


def _measure(call: Callable[[], None], n: int, blocks: int) -> dict[str, Any]:
    """``n`` calls: per-call wall and calling-thread CPU ns, plus whole-process CPU per call (all threads),
    overall and per block of ``n // blocks`` consecutive calls."""
    wall: list[int] = []
    cpu: list[int] = []
    block_process_cpu: list[float] = []
    perf, thread_cpu, process_cpu = time.perf_counter_ns, time.thread_time_ns, time.process_time_ns
    size = max(1, n // blocks)
    proc0 = block0 = process_cpu()
    for i in range(n):
        w0, c0 = perf(), thread_cpu()
        call()
        c1, w1 = thread_cpu(), perf()
        wall.append(w1 - w0)
        cpu.append(c1 - c0)
        if (i + 1) % size == 0:
            now = process_cpu()
            block_process_cpu.append((now - block0) / size)
            block0 = now
    return {
        "wall": wall,
        "cpu": cpu,
        "block_size": size,
        "block_process_cpu": block_process_cpu,
        "process_cpu_per_call": (process_cpu() - proc0) / n,
    }


def _profile_text(profiler: cProfile.Profile, top: int) -> str:
    """Top functions by tottime, overall and restricted to instrumentation code (OTel, wrapt, llmtally)."""
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("tottime")
    text.write("--- all code ---\n")
    stats.print_stats(top)
    stats = pstats.Stats(profiler, stream=text).sort_stats("tottime")
    text.write("--- instrumentation code only (paths matching opentelemetry|instrumentation|wrapt|llmtally) ---\n")
    stats.print_stats(r"opentelemetry|instrumentation|wrapt|llmtally", top)
    text.write("--- instrumentation code only, by cumtime (includes the wrapped SDK call for the outer wrappers) ---\n")
    stats.sort_stats("cumtime").print_stats(r"opentelemetry|instrumentation|wrapt|llmtally", top)
    return text.getvalue()


def worker(args: argparse.Namespace) -> None:
    """Runs in a fresh subprocess: set up the pipeline, instrument, warm up, measure, write JSON."""
    pipeline = _Pipeline()
    info = _instrument(args.worker, pipeline)
    calls, clients = _calls(args)
    emits: dict[str, Callable[[], None]] = {}
    if args.worker == "sdk-floor":
        calls, emits = _sdk_floor(pipeline, calls)
    counts = _counts(args)
    out: dict[str, Any] = {"info": info, "scenarios": {}, "scenario_telemetry": {}}
    profiles: dict[str, str] = {}
    for scenario in args.scenarios:
        _scenario_env(info, scenario)
        before = pipeline.counted()
        for _ in range(args.warmup):
            calls[scenario]()
        gc.collect()
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        out["scenarios"][scenario] = _measure(calls[scenario], counts[scenario], args.blocks)
        if profiler:
            profiler.disable()
            profiles[scenario] = _profile_text(profiler, args.profile_top)
        after = pipeline.counted()
        produced = {k: after[k] - before[k] for k in ("spans", "spans_with_usage", "logs")}
        produced["calls"] = args.warmup + counts[scenario]
        produced["span_names"] = {
            k: v - before["span_names"].get(k, 0)
            for k, v in after["span_names"].items()
            if v > before["span_names"].get(k, 0)
        }
        out["scenario_telemetry"][scenario] = produced
    for client in clients:
        close = getattr(client, "close", None)
        if close is not None:
            close()
    # The SDK's own cost of llmtally's span and audit event, alone in a tight loop (steadier than the difference
    # of two variants on a busy machine).
    floor = {scenario: _tight_loop_us(emit) for scenario, emit in emits.items()}
    out["telemetry"] = pipeline.finish()
    out["telemetry"]["sdk_floor_us"] = floor
    out["telemetry"]["calls"] = sum(args.warmup + counts[scenario] for scenario in args.scenarios)
    if profiles:
        out["profile"] = "\n".join(f"===== {args.profile}: {k} =====\n{v}" for k, v in profiles.items())
    Path(args.out).write_text(json.dumps(out))


def _counts(args: argparse.Namespace) -> dict[str, int]:
    """Measured calls per scenario and round: ``--n-stream`` for the stream, ``--n`` for the others."""
    return {"non-stream": args.n, "stream": args.n_stream, "gemini": args.n, "s3": args.n}


# --- driver ----------------------------------------------------------------------------------------------


def _start_provider() -> tuple[subprocess.Popen[str], str]:
    """The fake provider in its own process; returns it and the root URL it printed (the openai client adds
    ``/v1``; the google-genai client takes the root)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmtally.demo.fake_provider", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=BENCH_DIR,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("http"):
        proc.kill()
        raise SystemExit(f"fake provider did not start (printed {line!r})")
    return proc, line.rstrip("/")


def _start_aws() -> tuple[Any, str]:
    """bench/botocore_overhead.py's local AWS XML server (S3 ListBuckets...) in its own process, and its URL."""
    from botocore_overhead import start_server  # bench/ is this script's directory, so on sys.path

    process, url = start_server()
    return process, str(url)


def _stop_aws(process: Any) -> None:
    process.terminate()
    process.join(10)


def _stop_provider(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _run_worker(
    variant: str, base_url: str, aws_url: str | None, args: argparse.Namespace, profile: bool = False
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = tmp.name
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        variant,
        "--base-url",
        base_url,
        "--out",
        out,
        "--warmup",
        str(args.warmup),
        "--n",
        str(args.n),
        "--n-stream",
        str(args.n_stream),
        "--blocks",
        str(args.blocks),
        "--scenarios",
        *args.scenarios,
    ]
    if aws_url:
        cmd += ["--aws-url", aws_url]
    if profile:
        cmd += ["--profile", variant, "--profile-top", str(args.profile_top)]
    env = os.environ | {"PYTHONHASHSEED": "0"}
    try:
        subprocess.run(cmd, check=True, env=env)
        result: dict[str, Any] = json.loads(Path(out).read_text())
    finally:
        Path(out).unlink(missing_ok=True)
    return result


def _quantile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def _summary(values: list[int]) -> dict[str, float]:
    return {"median_us": statistics.median(values) / 1000, "p90_us": _quantile(values, 0.9) / 1000}


def _blocks(values: list[int], size: int) -> list[float]:
    """The median of each block of ``size`` consecutive calls."""
    return [statistics.median(values[i : i + size]) for i in range(0, len(values) - size + 1, size)]


def aggregate(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per variant and scenario: CPU per call of the least disturbed block (the lowest block median over all
    rounds), for the calling thread and the whole process, and the pooled wall time; overhead = figure(variant) -
    figure(none)."""
    report: dict[str, Any] = {}
    first = next(iter(runs.values()))[0]
    for scenario in first["scenarios"]:
        rows: dict[str, Any] = {}
        for variant, results in runs.items():
            measured = [r["scenarios"][scenario] for r in results]
            row: dict[str, Any] = {}
            for metric in ("wall", "cpu"):
                pooled = [v for m in measured for v in m[metric]]
                row[metric] = _summary(pooled)
                row[metric]["round_medians_us"] = [statistics.median(m[metric]) / 1000 for m in measured]
            cpu_blocks = [b / 1000 for m in measured for b in _blocks(m["cpu"], m["block_size"])]
            proc_blocks = [b / 1000 for m in measured for b in m["block_process_cpu"]]
            row["cpu"]["best_block_us"] = min(cpu_blocks)
            row["cpu"]["block_medians_us"] = cpu_blocks
            row["process_cpu"] = {"best_block_us": min(proc_blocks), "block_us": proc_blocks}
            rows[variant] = row
        base = rows["none"]
        for row in rows.values():
            row["wall"]["overhead_us"] = row["wall"]["median_us"] - base["wall"]["median_us"]
            for metric in ("cpu", "process_cpu"):
                row[metric]["overhead_us"] = row[metric]["best_block_us"] - base[metric]["best_block_us"]
        if "llmtally" in rows:
            mine = rows["llmtally"]
            for peer in PEERS:
                if peer in rows:
                    rows[peer]["llmtally_ratio"] = {
                        metric: _ratio(mine[metric]["overhead_us"], rows[peer][metric]["overhead_us"])
                        for metric in ("cpu", "process_cpu", "wall")
                    }
        report[scenario] = rows
    return report


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


SCENARIO_NOTES = {
    "gemini": f"google-genai `client.models.generate_content(model={GEMINI_MODEL!r})`, not streamed, to the fake "
    "provider's `:generateContent`.",
    "s3": "boto3 `s3.list_buckets()` to the local AWS XML server: an AWS call that is not Bedrock, which an LLM "
    "instrumentation should leave alone. The official botocore instrumentation traces every AWS call by design, so "
    "its overhead here is not an LLM instrumentation's; OpenLLMetry's bedrock one patches only bedrock-runtime "
    "clients.",
}


def _dep_text(entry: dict[str, Any]) -> str:
    """One instrumentor's dependency check, as the tables say it."""
    text = str(entry.get("dep_check", "-"))
    if "skip_dep_check" in entry:
        text += f", skip_dep_check={'worked' if entry['skip_dep_check'] else 'still not instrumented'}"
    if "error" in entry:
        text += f", failed: {entry['error']}"
    return text


def _dep_summary(info: dict[str, Any]) -> str:
    """The telemetry table's cell: each instrumentor's check (llmtally: the hooks that are on)."""
    entries = info.get("instrumentors") or []
    if not entries:
        return str(info.get("dep_check", "-"))
    if info["variant"].startswith("llmtally"):
        on = [e["sdk"] for e in entries if e["dep_check"] == "passed"]
        off = [e["sdk"] for e in entries if e["dep_check"] != "passed"]
        return f"on: {', '.join(on) or '-'}" + (f"; off: {', '.join(off)}" if off else "")
    return "; ".join(f"{e['sdk']}: {_dep_text(e)}" for e in entries)


def markdown(report: dict[str, Any], telemetry: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    """The results as Markdown: one table per scenario, then what each variant produced."""
    counts, blocks = meta["counts"], meta["blocks"]
    labels = {"stream": f"stream ({STREAM_CHUNKS} chunks)"}
    lines = [
        f"Per-call cost, {meta['rounds']} interleaved rounds x "
        + " / ".join(f"{counts[s]} {labels.get(s, s)}" for s in meta["scenarios"])
        + " calls per variant in blocks of "
        + " / ".join(str(counts[s] // blocks) for s in meta["scenarios"])
        + f", {meta['warmup']} warm-up calls per scenario. "
        "CPU = median CPU time per call of the calling thread in the least disturbed block (lowest block median "
        "over all rounds); proc CPU = the whole client process (export threads included) per call, least disturbed "
        "block; wall = pooled median. Overhead = figure(variant) - figure(none); ratio = llmtally overhead / peer "
        "overhead (< 1 means llmtally is cheaper).",
        "",
    ]
    for scenario, rows in report.items():
        lines += [f"### {scenario}", ""]
        if scenario in SCENARIO_NOTES:
            lines += [SCENARIO_NOTES[scenario], ""]
        lines += [
            "| variant | CPU (us) | CPU overhead (us) | proc CPU (us) | proc CPU overhead (us) | wall median (us) "
            "| wall p90 (us) | wall overhead (us) | llmtally/peer (CPU, proc CPU, wall) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for variant, row in rows.items():
            ratio = row.get("llmtally_ratio")
            ratio_text = ", ".join(_fmt_ratio(ratio[m]) for m in ("cpu", "process_cpu", "wall")) if ratio else ""
            cpu, proc, wall = row["cpu"], row["process_cpu"], row["wall"]
            lines.append(
                f"| {variant} | {cpu['best_block_us']:.1f} | {cpu['overhead_us']:+.1f} | {proc['best_block_us']:.1f} "
                f"| {proc['overhead_us']:+.1f} | {wall['median_us']:.1f} | {wall['p90_us']:.1f} "
                f"| {wall['overhead_us']:+.1f} | {ratio_text} |"
            )
        lines.append("")
    lines += [
        "### telemetry produced (last round)",
        "",
        "| variant | package | dependency check | calls | spans | spans with token usage | log records "
        "| metric points | metric collection CPU per call (us) | span names |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for variant, tel in telemetry.items():
        info = meta["instrumentation"][variant]
        names = ", ".join(f"{k} x{v}" for k, v in sorted(tel["span_names"].items())) or "-"
        lines.append(
            f"| {variant} | {info.get('package', '-')} | {_dep_summary(info)} | {tel['calls']} | {tel['spans']} "
            f"| {tel['spans_with_usage']} | {tel['logs']} "
            f"| {sum(tel['metric_points'].values())} | {tel.get('collect_cpu_us', 0) / max(1, tel['calls']):.1f} "
            f"| {names} |"
        )
    lines += [
        "",
        "### telemetry per scenario (last round; warm-up and measured calls)",
        "",
        "| variant | scenario | calls | spans | spans with token usage | log records | span names |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for variant, per in meta["scenario_telemetry"].items():
        for scenario, tel in per.items():
            names = ", ".join(f"{k} x{v}" for k, v in sorted(tel["span_names"].items())) or "-"
            lines.append(
                f"| {variant} | {scenario} | {tel['calls']} | {tel['spans']} | {tel['spans_with_usage']} "
                f"| {tel['logs']} | {names} |"
            )
    instrumentors = [
        f"| {variant} | {entry['sdk']} | {entry['class']} | {entry['package']} "
        f"| {', '.join(entry.get('instruments') or []) or '-'} | {_dep_text(entry)} |"
        for variant, info in meta["instrumentation"].items()
        for entry in info.get("instrumentors") or []
    ]
    if instrumentors:
        lines += [
            "",
            "### instrumentors turned on (last round)",
            "",
            "| variant | SDK | instrumentor | package | instrumentation_dependencies() | dependency check |",
            "| --- | --- | --- | --- | --- | --- |",
            *instrumentors,
        ]
    for variant, info in meta["instrumentation"].items():
        if info.get("emit_event_env"):
            env = info["emit_event_env"]
            lines += [
                "",
                f"{variant}: turning its instrumentors on set {GENAI_EMIT_EVENT}={env['after']} process-wide "
                f"(before: {env['before'] or 'unset'}), which would also add a log record to each openai call; the "
                "openai scenarios ran with it as before, the others as the instrumentors left it.",
            ]
    for variant, tel in telemetry.items():
        if tel.get("sdk_floor_us"):
            shown = ", ".join(f"{scenario} {us:.1f} us" for scenario, us in tel["sdk_floor_us"].items())
            sent = TIGHT_LOOP[0] * TIGHT_LOOP[1] * len(tel["sdk_floor_us"])
            lines += [
                "",
                f"{variant}: llmtally's span and audit event through the SDK alone, tight loop: {shown} "
                f"(its {sent} spans and log records are in the counts above)",
            ]
    if "aws_answered" in meta:
        lines += [
            "",
            f"local AWS server: s3.list_buckets answered {meta['aws_answered'].get('s3.list_buckets', 0)} "
            f"(expected {meta['aws_expected']})",
        ]
    return "\n".join(lines)


def driver(args: argparse.Namespace) -> None:
    """Start the provider (and the AWS server for s3), run the variants interleaved over the rounds, report."""
    variants = [v for v in VARIANTS + EXTRA_VARIANTS if v in args.variants]
    if "none" not in variants:
        variants.insert(0, "none")
    proc, base_url = _start_provider()
    aws: Any = None
    aws_url: str | None = None
    aws_answered: dict[str, int] | None = None
    started = time.monotonic()
    try:
        if "s3" in args.scenarios:
            aws, aws_url = _start_aws()
        if args.profile:
            result = _run_worker(args.profile, base_url, aws_url, args, profile=True)
            print(result["profile"])
            return
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        for rnd in range(args.rounds):
            order = variants[rnd % len(variants) :] + variants[: rnd % len(variants)]
            for variant in order:
                t0 = time.monotonic()
                result = _run_worker(variant, base_url, aws_url, args)
                runs[variant].append(result)
                tel = result["telemetry"]
                print(
                    f"round {rnd + 1}/{args.rounds} {variant:<18} {time.monotonic() - t0:5.1f}s "
                    f"spans={tel['spans']} logs={tel['logs']} metric_points={sum(tel['metric_points'].values())} "
                    f"calls={tel['calls']}",
                    file=sys.stderr,
                    flush=True,
                )
        if aws_url:
            from botocore_overhead import server_counts

            aws_answered = server_counts(aws_url)
    finally:
        if aws is not None:
            _stop_aws(aws)
        _stop_provider(proc)
    report = aggregate(runs)
    telemetry = {v: runs[v][-1]["telemetry"] for v in variants}
    counts = _counts(args)
    meta: dict[str, Any] = {
        "rounds": args.rounds,
        "warmup": args.warmup,
        "n": args.n,
        "n_stream": args.n_stream,
        "blocks": args.blocks,
        "stream_chunks": STREAM_CHUNKS,
        "scenarios": list(args.scenarios),
        "counts": {s: counts[s] for s in args.scenarios},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "elapsed_s": round(time.monotonic() - started, 1),
        "versions": _versions(),
    }
    if aws_answered is not None:
        meta["aws_answered"] = aws_answered
        # sdk-floor also makes one call with llmtally on per scenario, to capture what llmtally sends for it
        meta["aws_expected"] = args.rounds * (len(variants) * (args.warmup + args.n) + ("sdk-floor" in variants))
    meta["instrumentation"] = {v: runs[v][-1]["info"] for v in variants}
    meta["scenario_telemetry"] = {v: runs[v][-1]["scenario_telemetry"] for v in variants}
    text = markdown(report, telemetry, meta)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "results": report, "telemetry": telemetry}, indent=2) + "\n")
    print(f"\nJSON written to {RESULTS} ({meta['elapsed_s']}s)", file=sys.stderr)


def _versions() -> dict[str, str]:
    """The SDKs and the OpenTelemetry SDK measured (installed versions; "-" when missing)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("openai", "google-genai", "boto3", "botocore", "opentelemetry-sdk"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "-"
    return found


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: the driver by default, ``--worker VARIANT`` inside each subprocess."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    all_variants = VARIANTS + EXTRA_VARIANTS
    parser.add_argument("--quick", action="store_true", help="short run (200/100 calls, 50 warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all variants")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up calls per scenario (default 200)")
    parser.add_argument(
        "--n", type=int, default=None, help="measured non-stream, gemini and s3 calls per round (default 2000)"
    )
    parser.add_argument("--n-stream", type=int, default=None, help="measured stream calls per round (default 800)")
    parser.add_argument("--blocks", type=int, default=10, help="blocks per round; the least disturbed one counts")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=all_variants)
    parser.add_argument(
        "--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS, help="default: all, in this order"
    )
    parser.add_argument("--profile", choices=all_variants, help="cProfile this variant's measured calls instead")
    parser.add_argument("--profile-top", type=int, default=15)
    parser.add_argument("--worker", choices=all_variants, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--aws-url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    args.warmup = args.warmup if args.warmup is not None else (50 if quick else 200)
    args.n = args.n if args.n is not None else (200 if quick else 2000)
    args.n_stream = args.n_stream if args.n_stream is not None else (100 if quick else 800)
    args.scenarios = [s for s in SCENARIOS if s in args.scenarios]  # the fixed order, each once
    if args.worker:
        worker(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()
