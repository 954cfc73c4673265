"""The benchmarks still run and measure what they say (short runs; their figures are never pass/fail)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=BENCH.parent, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_overhead_sdk_floor_sends_llmtallys_span_and_event_through_the_sdk_alone():
    out = _run(
        str(BENCH / "overhead.py"),
        "--rounds=1",
        "--warmup=5",
        "--n=20",
        "--n-stream=10",
        "--blocks=2",
        "--scenarios",
        "non-stream",
        "stream",
        "--variants",
        "none",
        "sdk-floor",
    )
    floor = re.search(r"sdk-floor: .* tight loop: non-stream ([\d.]+) us, stream ([\d.]+) us", out)
    assert floor, out
    assert all(float(us) > 0 for us in floor.groups())
    # Each measured call sent one span and one audit event (llmtally's, captured from an instrumented call), and
    # so did each run of the tight loop: 2 x 15 x 200 of them.
    row = re.search(r"\| sdk-floor \| - \| - \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|", out)
    assert row, out
    calls, spans, with_usage, logs = map(int, row.groups())
    assert calls == 2 * 5 + 20 + 10
    assert spans == logs == with_usage == calls + 2 * 15 * 200


def test_overhead_gemini_and_s3_scenarios_run_and_llmtally_records_only_the_gemini_calls():
    out = _run(
        str(BENCH / "overhead.py"),
        "--rounds=1",
        "--warmup=5",
        "--n=20",
        "--blocks=2",
        "--scenarios",
        "gemini",
        "s3",
        "--variants",
        "none",
        "llmtally",
        "otel-genai-openai",
        "openllmetry",
    )
    variants = ("none", "llmtally", "otel-genai-openai", "openllmetry")
    for scenario in ("gemini", "s3"):
        table = out.split(f"### {scenario}\n", 1)[1].split("\n### ", 1)[0]
        for variant in variants:
            assert re.search(rf"^\| {variant} \| [\d.]+ \| [+-][\d.]+ \|", table, re.MULTILINE), table
    produced = {
        (variant, scenario): tuple(map(int, counts))
        for variant, scenario, *counts in re.findall(
            r"^\| ([\w-]+) \| (gemini|s3) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|", out, re.MULTILINE
        )
    }
    calls = 5 + 20
    # calls, spans, spans with token usage, log records: one span and one audit event per gemini call, nothing for S3
    assert produced["llmtally", "gemini"] == (calls, calls, calls, calls), out
    assert produced["llmtally", "s3"] == (calls, 0, 0, 0), out
    assert produced["none", "gemini"] == produced["none", "s3"] == (calls, 0, 0, 0), out
    # Every S3 call reached the local AWS server, in every variant.
    answered = re.search(r"s3\.list_buckets answered (\d+) \(expected (\d+)\)", out)
    assert answered and int(answered[1]) == int(answered[2]) == len(variants) * calls, out


def test_receiver_breakdown_reports_the_protobuf_floor_below_the_attribute_reading():
    out = _run(str(BENCH / "receiver_throughput.py"), "--breakdown", "--records", "2048")
    steps = dict(re.findall(r"^\| (.+?) \| ([\d.]+) \|$", out, re.MULTILINE))
    iterate = float(steps["attributes: iterating the KeyValues only (protobuf floor)"])
    read = float(steps["attributes -> dict (upb reads)"])
    assert 0 < iterate < read, steps
    assert float(steps["SQLite write, groups of 8192 (records, rollups)"]) > 0
