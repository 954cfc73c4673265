"""`llmtally demo` end to end: fake provider, receiver subprocess, the example app under opentelemetry-instrument."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

from llmtally.demo.app import APP_CALLS
from llmtally.demo.console import run_demo
from llmtally.exporter.store import open_store

ALL_TIME = (0, 2**63 - 1)


def requests_total(output: str) -> float:
    """The sum of the `completion_requests_total` samples the demo printed."""
    values = re.findall(r"^\s*completion_requests_total(?:\{.*\})? (\S+)$", output, re.MULTILINE)
    return sum(float(v) for v in values)


def test_demo_stores_the_apps_requests_and_shows_metrics(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMTALLY_"))}
    env["TMPDIR"] = str(tmp_path)  # the demo's temporary directory (and store) go under tmp_path
    run = subprocess.run(
        [sys.executable, "-m", "llmtally", "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    metrics_url = re.search(r"http://127\.0\.0\.1:\d+/metrics", run.stdout)
    assert metrics_url, run.stdout
    assert requests_total(run.stdout) > 0, run.stdout
    store_url = re.search(r"^store: (sqlite:///\S+)$", run.stdout, re.MULTILINE)
    assert store_url, run.stdout
    assert store_url[1].startswith(f"sqlite:///{tmp_path}/")
    with open_store(store_url[1]) as store:
        assert store.count() == APP_CALLS


def test_demo_into_a_given_store(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the demo's temporary directory (its receiver log)
    url = f"sqlite:///{tmp_path}/demo.db"
    assert run_demo(store=url) == 0
    out = capsys.readouterr().out
    assert f"store: {url}" in out
    assert f"$ llmtally usage --store {url} --range today --by model" in out
    with open_store(url) as store:
        records = store.records_between(*ALL_TIME)
    assert len(records) == APP_CALLS
    assert {"openai", "anthropic", "ollama", "gcp.gemini", "aws.bedrock"} <= {r.provider for r in records}
    assert all(r.priced for r in records if r.provider in ("gcp.gemini", "aws.bedrock"))
