"""Install size and import time of llmtally's app side against the official GenAI instrumentation and OpenLLMetry.

``python bench/install_footprint.py`` builds llmtally's wheel from this source tree, then for each variant makes a
fresh venv (no pip inside it: the outer pip installs with ``--python``, sharing one download cache), installs the
variant next to the same ``openai`` (the app), and measures:

- what the variant adds to the app's venv: site-packages bytes and distributions, over a venv with only ``openai``;
- in-code start-up: importing the instrumentor and calling ``instrument()`` once ``openai`` is imported (median of
  ``--runs`` fresh processes; no SDK providers are set, so each instrumentor works on the API's no-op globals);
- launcher start-up: ``opentelemetry-instrument python -c 'import openai'`` with the distro's defaults (OTLP/gRPC
  exporters for every signal, every installed instrumentor), from spawning to the line after ``import openai``, minus
  the same without the launcher (so openai's own import, which some instrumentors trigger, counts for no one).

The peers get ``opentelemetry-distro`` and ``opentelemetry-exporter-otlp`` too, which llmtally's base install brings,
so every variant can run under ``opentelemetry-instrument`` and export. Markdown to stdout, JSON to
``bench/results/install_footprint.json``. Needs PyPI. A benchmark, not a test: it never fails on a number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results" / "install_footprint.json"
APP = "openai==3.60.0"
LAUNCHER = ("opentelemetry-distro", "opentelemetry-exporter-otlp")
VARIANTS: dict[str, dict[str, Any]] = {
    # The launcher and its exporters with no LLM instrumentation: the floor every variant shares.
    "distro only": {"packages": list(LAUNCHER), "instrument": "pass"},
    "llmtally": {"packages": ["{wheel}"], "instrument": "import llmtally; llmtally.instrument()"},
    "llmtally[serve]": {"packages": ["{wheel}[serve]"], "instrument": "import llmtally; llmtally.instrument()"},
    "otel-genai-openai": {
        "packages": ["opentelemetry-instrumentation-genai-openai==1.3b0", *LAUNCHER],
        "instrument": "from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor\n"
        "OpenAIInstrumentor().instrument()",
    },
    "openllmetry": {
        "packages": ["opentelemetry-instrumentation-openai==0.62.4", *LAUNCHER],
        "instrument": "from opentelemetry.instrumentation.openai import OpenAIInstrumentor\n"
        "OpenAIInstrumentor().instrument()",
    },
}
_IN_CODE = """
import time
import openai
t = time.perf_counter()
{instrument}
print(time.perf_counter() - t)
"""
_FIRST_LINE = "import openai, time; print(time.time())"  # the app's first line, once it has imported openai


def build_wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("llmtally-*.whl"))


def make_venv(path: Path, packages: list[str], cache: Path) -> Path:
    """A venv without pip, with `packages` installed by this interpreter's pip; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    if packages:
        pip = [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--pre",
            "--cache-dir",
            str(cache),
        ]
        subprocess.run([*pip, *packages], check=True)
    return python


def site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def footprint(python: Path) -> tuple[int, set[str]]:
    """Bytes under site-packages (no __pycache__) and the installed distributions' names."""
    root = site_packages(python)
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
    dists = {d.name.split("-")[0].lower().replace("_", "-") for d in root.glob("*.dist-info")}
    return size, dists


def _run(command: list[str], env: dict[str, str]) -> str:
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    if run.returncode != 0:
        raise RuntimeError(f"{command} failed: {run.stderr}")
    return run.stdout


def in_code_seconds(python: Path, instrument: str, runs: int, env: dict[str, str]) -> float:
    script = _IN_CODE.format(instrument=instrument)
    _run([str(python), "-c", script], env)  # warm-up: writes the .pyc files
    return statistics.median(float(_run([str(python), "-c", script], env).split()[-1]) for _ in range(runs))


def _first_line(command: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning `command` to the app's first line; the process is then stopped (so no export at exit)."""
    start = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
    finally:
        process.kill()
        process.wait()
    if not line:
        raise RuntimeError(f"{command} printed nothing")
    return float(line) - start


def first_line_seconds(command: list[str], runs: int, env: dict[str, str]) -> float:
    """Median of `runs` fresh processes (after one warm-up that writes the .pyc files)."""
    _first_line(command, env)
    return statistics.median(_first_line(command, env) for _ in range(runs))


def measure(name: str, spec: dict[str, Any], wheel: Path, work: Path, cache: Path, runs: int) -> dict[str, Any]:
    packages = [APP, *(p.format(wheel=wheel) for p in spec["packages"])]
    python = make_venv(work / "".join(c if c.isalnum() else "-" for c in name), packages, cache)
    size, dists = footprint(python)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMTALLY_"))}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens; start-up never connects
    plain = first_line_seconds([str(python), "-c", _FIRST_LINE], runs, env)
    launched = first_line_seconds(
        [str(python.with_name("opentelemetry-instrument")), str(python), "-c", _FIRST_LINE], runs, env
    )
    return {
        "size": size,
        "dists": sorted(dists),
        "in_code_s": in_code_seconds(python, spec["instrument"], runs, env),
        "launcher_s": launched - plain,
    }


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def table(results: dict[str, Any], base: dict[str, Any]) -> str:
    lines = [
        f"App: `{APP}` alone = {_mib(base['size'])}, {len(base['dists'])} distributions.",
        "",
        "| variant | installs (over the app) | site-packages added | distributions added | import + `instrument()` "
        "| `opentelemetry-instrument` start-up |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        added = sorted(set(r["dists"]) - set(base["dists"]))
        spec = ", ".join(f"`{p.replace('{wheel}', 'llmtally')}`" for p in VARIANTS[name]["packages"])
        lines.append(
            f"| {name} | {spec} | {_mib(r['size'] - base['size'])} | {len(added)} | "
            f"{r['in_code_s'] * 1000:.0f} ms | {r['launcher_s'] * 1000:.0f} ms |"
        )
    for name, r in results.items():
        lines.append("")
        lines.append(f"{name} adds: {', '.join(sorted(set(r['dists']) - set(base['dists'])))}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per timing (median)")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "pip", help="pip download cache")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmtally-footprint-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work / "wheel")
        base_python = make_venv(work / "app", [APP], args.cache_dir)
        base_size, base_dists = footprint(base_python)
        base = {"size": base_size, "dists": sorted(base_dists)}
        results = {n: measure(n, VARIANTS[n], wheel, work, args.cache_dir, args.runs) for n in args.variants}
    RESULTS.parent.mkdir(exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "runs": args.runs}
    RESULTS.write_text(json.dumps({"meta": meta, "app": base, "variants": results}, indent=2))
    print(table(results, base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
