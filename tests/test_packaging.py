"""`pip install .` builds a wheel with the mapped layout and the entry points the launcher loads."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

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


def test_demo_shows_real_telemetry(tmp_path):
    run = subprocess.run(
        [Path(sys.executable).with_name("llmtally"), "demo"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "8 audit events (llmtally.completion), 8 spans" in run.stdout
    assert "claude-haiku-4-5-20251001" in run.stdout and "ollama" in run.stdout
    assert "completion.requests.total" in run.stdout
