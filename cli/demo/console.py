"""`llmtally demo`: the example app under `opentelemetry-instrument`, exporting OTLP to a real `llmtally serve`.

It starts the fake provider and a receiver on free loopback ports (store: a fresh SQLite file unless given), runs
the app, waits until the receiver has stored its requests, then shows what `llmtally usage`, `llmtally requests`
and /metrics report. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2

from llmtally.demo.app import APP_CALLS
from llmtally.demo.fake_provider import FakeProvider
from llmtally.exporter.store import open_store

READY_TIMEOUT_S = 20.0
STORED_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
APP_TIMEOUT_S = 90.0
METRICS_SHOWN = ("completion_requests_total", "completion_cost_usd_total")
LINES_PER_METRIC = 4
_INHERITED = ("OTEL_", "LLMTALLY_", "ANTHROPIC_")


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


def run_demo(store: str | None = None, keep_running: bool = False) -> int:
    """Runs the demo end to end; returns the exit code. `store` defaults to a SQLite file in a new temporary
    directory (kept, so the printed commands can be re-run); `keep_running` leaves the receiver up until Ctrl-C.
    SIGTERM counts as Ctrl-C, so the receiver is stopped either way."""
    with _sigterm_interrupts():
        try:
            _demo(store, keep_running)
        except DemoError as error:
            print(f"llmtally demo: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    return 0


def _demo(store: str | None, keep_running: bool) -> None:
    """The demo's steps; the receiver is stopped however they end."""
    workdir = Path(tempfile.mkdtemp(prefix="llmtally-demo-"))
    store = _absolute(store) if store else f"sqlite:///{workdir / 'audit.db'}"
    grpc_port, http_port = _free_port(), _free_port()
    http_url, log = f"http://127.0.0.1:{http_port}", workdir / "serve.log"
    with FakeProvider() as provider:
        print(f"fake provider: {provider.base_url} (OpenAI, Anthropic, Ollama, Gemini and Bedrock APIs)")
        print(f"store: {store}")
        receiver = _start_receiver(store, grpc_port, http_port, log)
        try:
            _wait_ready(receiver, http_url, log)
            print(f"receiver: OTLP/gRPC 127.0.0.1:{grpc_port}, HTTP {http_url} (log {log})")
            with open_store(store) as opened:
                before = opened.count()
            _run_app(provider.base_url, grpc_port, workdir)
            _wait_stored(store, before + APP_CALLS)
            _show_reports(store)
            _show_metrics(http_url)
            if keep_running:
                print(f"\nreceiver running at {http_url} (OTLP/gRPC 127.0.0.1:{grpc_port}), Ctrl-C to stop")
                _wait_for_interrupt(receiver)
        finally:
            _stop(receiver)
    print(f"\nreceiver stopped; the store stays at {store}")


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (only the main thread can set signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _absolute(store: str) -> str:
    """`store` with a relative SQLite path made absolute (the receiver runs in another directory)."""
    prefix = "sqlite:///"
    path = store.removeprefix(prefix)
    if not store.startswith(prefix) or path == ":memory:" or Path(path).is_absolute():
        return store
    return prefix + str(Path(path).resolve())


def _free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without OTEL_/LLMTALLY_/ANTHROPIC_ settings, plus `extra`."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED)} | extra


def _start_receiver(store: str, grpc_port: int, http_port: int, log: Path) -> subprocess.Popen[bytes]:
    """`llmtally serve` as a subprocess in the log's directory (so no ./llmtally.yaml applies), output to `log`."""
    command = [sys.executable, "-m", "llmtally", "serve", "--store", store]
    command += ["--otlp-grpc", f"127.0.0.1:{grpc_port}", "--http", f"127.0.0.1:{http_port}"]
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=log.parent, env=_clean_env(), stdout=out, stderr=subprocess.STDOUT)


def _wait_ready(receiver: subprocess.Popen[bytes], http_url: str, log: Path) -> None:
    """Waits until the receiver's /readyz answers 200."""
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_S:
        if receiver.poll() is not None:
            raise DemoError(f"the receiver exited with {receiver.returncode}:\n{log.read_text()}")
        try:
            if httpx2.get(f"{http_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    raise DemoError(f"the receiver was not ready after {READY_TIMEOUT_S:.0f}s:\n{log.read_text()}")


def _run_app(base_url: str, grpc_port: int, workdir: Path) -> None:
    """Runs `python -m llmtally.demo.app` under `opentelemetry-instrument`, exporting to the receiver."""
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    if not launcher.is_file():
        raise DemoError(f"{launcher} not found: install llmtally (it brings opentelemetry-distro)")
    env = _clean_env(
        LLMTALLY_DEMO_BASE_URL=base_url,
        OTEL_SERVICE_NAME="llmtally-demo",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{grpc_port}",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="none",
        OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED="false",
    )
    command = [str(launcher), sys.executable, "-m", "llmtally.demo.app"]
    print(f"\nexample app: opentelemetry-instrument python -m llmtally.demo.app, OTLP to 127.0.0.1:{grpc_port}")
    try:
        run = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True, timeout=APP_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise DemoError(f"the example app did not finish in {APP_TIMEOUT_S:.0f}s") from error
    for line in run.stdout.splitlines():
        print(f"  {line}")
    if run.returncode != 0:
        raise DemoError(f"the example app exited with {run.returncode}:\n{run.stderr}")


def _wait_stored(store: str, expected: int) -> None:
    """Waits until the store holds `expected` records."""
    started = time.monotonic()
    with open_store(store) as opened:
        while (count := opened.count()) < expected:
            if time.monotonic() - started > STORED_TIMEOUT_S:
                raise DemoError(f"the store holds {count} records, not {expected}, after {STORED_TIMEOUT_S:.0f}s")
            time.sleep(0.1)
    print(f"stored: {APP_CALLS} records (one per LLM request) in {time.monotonic() - started:.1f}s")


def _show_reports(store: str) -> None:
    """Prints what the two report commands show, each under the command line that re-runs it."""
    from llmtally.cli import main

    for argv in (
        ["usage", "--store", store, "--range", "today", "--by", "model"],
        ["requests", "--store", store, "--limit", "10"],
    ):
        print(f"\n$ llmtally {shlex.join(argv)}", flush=True)
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse exits on arguments it does not know
            code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
        sys.stdout.flush()
        if code != 0:
            print(f"warning: `llmtally {argv[0]}` exited with {code}")


def _show_metrics(http_url: str) -> None:
    """Prints the /metrics URL and its first few request-count and cost samples."""
    print(f"\nPrometheus metrics: {http_url}/metrics")
    lines = httpx2.get(f"{http_url}/metrics", timeout=10).text.splitlines()
    for name in METRICS_SHOWN:
        samples = [line for line in lines if line.startswith((f"{name}{{", f"{name} "))]
        for line in samples[:LINES_PER_METRIC]:
            print(f"  {line}")
        if len(samples) > LINES_PER_METRIC:
            print(f"  ... {len(samples) - LINES_PER_METRIC} more {name} samples")


def _wait_for_interrupt(receiver: subprocess.Popen[bytes]) -> None:
    """Returns on Ctrl-C (or when the receiver exits by itself)."""
    try:
        while receiver.poll() is None:
            time.sleep(0.5)
        print(f"the receiver exited with {receiver.returncode}", file=sys.stderr)
    except KeyboardInterrupt:
        print()


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the receiver then stores what it acknowledged), then SIGKILL after STOP_TIMEOUT_S."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
