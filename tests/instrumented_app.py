"""The example app (`llmtally.demo.app`) run unmodified under `opentelemetry-instrument`, as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from llmtally.demo.app import APP_CALLS

__all__ = ["APP_CALLS", "run_instrumented_app"]


def run_instrumented_app(base_url: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Runs the app against the provider at `base_url` with only `env` set (no inherited OTEL_/LLMTALLY_ settings);
    every installed instrumentation loads. Fails the test when the app fails."""
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMTALLY_", "ANTHROPIC_"))}
    clean |= {"LLMTALLY_DEMO_BASE_URL": base_url} | env
    run = subprocess.run(
        [str(launcher), sys.executable, "-m", "llmtally.demo.app"],
        env=clean,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run
