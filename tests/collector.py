"""A real OpenTelemetry Collector subprocess for tests: the distribution built from collector/ by
scripts/build-collector.sh (cached under .cache/otelcol/), free loopback ports, stopped by PID.

`build_collector()` runs the build script (a no-op while the binary is newer than the sources) and fails the test,
never skips it, when Go or the binary is missing. `Collector` runs it with the config files given (merged in order,
as `--config` does); `OTLP_GRPC_LISTEN` / `OTLP_HTTP_LISTEN` point the shipped configs'
receiver at free loopback ports, and the collector's own telemetry is turned off (no fixed port).
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerting_stack import Server
from receiver import free_port

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "scripts" / "build-collector.sh"
BINARY = ROOT / ".cache" / "otelcol" / "otelcol-llmtally"
# Merged last: the collector's own metrics off (they would take a fixed port), info logs (readiness is read there).
QUIET = {"service": {"telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}}}}


def build_collector() -> Path:
    """The collector binary, built first when missing or older than collector/ (minutes, once)."""
    run = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800)
    if run.returncode != 0 or not os.access(BINARY, os.X_OK):
        pytest.fail(f"the test collector could not be built (needs Go and the Go module proxy):\n{run.stderr[-4000:]}")
    return BINARY


def validate(binary: Path, *configs: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`otelcol validate` on `configs` (merged): returns the finished process."""
    argv = [str(binary), "validate", *(f"--config={c}" for c in configs)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=_env(env or {}))


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _env(extra: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OTLP_", "LLMTALLY_"))}
    return clean | extra


class Collector(Server):
    """The collector with `configs` (merged in order) and `env`; its OTLP receiver on two free loopback ports."""

    def __init__(self, binary: Path, workdir: Path, configs: list[Path], env: dict[str, str] | None = None) -> None:
        grpc_port = free_port()
        super().__init__(workdir, f"collector-{grpc_port}")
        self.binary = binary
        self.configs = configs
        self.grpc_port = grpc_port
        self.http_port = free_port()
        self.env = {
            "OTLP_GRPC_LISTEN": f"127.0.0.1:{self.grpc_port}",
            "OTLP_HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
            **(env or {}),
        }

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def command(self) -> list[str]:
        quiet = write_config(self.workdir / f"{self.name}-telemetry.yaml", QUIET)
        return [str(self.binary), *(f"--config={c}" for c in [*self.configs, quiet])]

    def environment(self) -> dict[str, str]:
        return _env(self.env)

    def ready(self) -> bool:
        return "Everything is ready" in self.tail(100_000) and _accepts(self.grpc_port)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM by PID (the collector drains its queues as it shuts down), SIGKILL past the timeout."""
        return super().stop(timeout)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
