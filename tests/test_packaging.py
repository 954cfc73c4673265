"""`pip install .` builds a wheel with the mapped layout and the entry points the launcher loads."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from llmtally.demo.app import APP_CALLS

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_has_the_packages_and_entry_points(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("llmtally-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "llmtally/__init__.py",
        "llmtally/cli.py",
        "llmtally/demo/fake_provider.py",
        "llmtally/instrumentation/call.py",
        "llmtally/instrumentation/openai/__init__.py",
        "llmtally/instrumentation/anthropic/__init__.py",
        "llmtally/instrumentation/http/hooks.py",
        "llmtally/exporter/__init__.py",
        "llmtally/py.typed",
    ):
        assert module in names, module
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[opentelemetry_instrumentor]" in text
    for line in (
        "llmtally_openai = llmtally.instrumentation.openai:OpenAIInstrumentor",
        "llmtally_anthropic = llmtally.instrumentation.anthropic:AnthropicInstrumentor",
        "llmtally_http = llmtally.instrumentation.http:HTTPInstrumentor",
        "llmtally = llmtally.cli:main",
    ):
        assert line in text, line


def test_llmtally_command_runs():
    run = subprocess.run([Path(sys.executable).with_name("llmtally"), "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("llmtally ")


def test_demo_command_runs_end_to_end(tmp_path):
    """The installed `llmtally` script runs the demo (tests/test_demo.py checks what it stores and shows)."""
    run = subprocess.run(
        [Path(sys.executable).with_name("llmtally"), "demo"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=os.environ | {"TMPDIR": str(tmp_path)},
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"stored: {APP_CALLS} records" in run.stdout
    assert "completion_requests_total{" in run.stdout
