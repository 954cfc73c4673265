"""bench/botocore_overhead.py still runs and makes the calls it says (a short run; its figures are never pass/fail)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "botocore_overhead.py"


def test_the_botocore_overhead_bench_runs_and_counts_its_calls():
    done = subprocess.run(
        [sys.executable, str(BENCH), "--calls=5", "--blocks=2", "--warmup=2"],
        cwd=BENCH.parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    rows = re.findall(r"^\| ([a-z0-9_.]+) \| ([\d.]+) \| ([\d.]+) \| [+-][\d.]+ \| ([\d.]+) \|$", out, re.MULTILINE)
    assert [row[0] for row in rows] == ["s3.list_buckets", "s3.get_object", "sts.get_caller_identity"], out
    assert all(float(value) > 0 for row in rows for value in row[1:]), out
    floor = re.search(r"tight loop: bare ([\d.]+) ns, hooked ([\d.]+) ns", out)
    assert floor and 0 < float(floor.group(1)) < float(floor.group(2)), out
    # Each operation was answered once per call: 2 warm-up calls and 2 blocks of 5, for each of the 2 variants.
    answered = dict(re.findall(r"([a-z0-9_.]+) (\d+)(?:,| \()", out.split("requests answered: ", 1)[1]))
    assert answered == {
        op: str((2 + 2 * 5) * 2) for op in ("s3.list_buckets", "s3.get_object", "sts.get_caller_identity")
    }
