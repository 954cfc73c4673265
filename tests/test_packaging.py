"""`pip install .` builds a wheel with the mapped layout, the entry points the launcher loads and the stack files
(dashboards, provisioning, rules, alertmanager.yml, Prometheus and collector configs, the compose template); the app's
install (`pip install llmtally`) brings none of the receiver's dependencies, which come with `llmtally[serve]`, and
`llmtally bundle` from an installed `llmtally[serve]` writes a valid stack (tests/bundle_checks.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from bundle_checks import check_bundle, compose_schema
from collector import build_collector
from llmtally.cli import SERVE_MODULES
from llmtally.demo.app import APP_CALLS
from otlp_sink import OTLPSink

ROOT = Path(__file__).resolve().parent.parent
APP_DEPENDENCIES = {
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation",
    "opentelemetry-distro",
    "opentelemetry-exporter-otlp",
    "wrapt",
}
SERVE_DEPENDENCIES = {
    "pyyaml",
    "opentelemetry-proto",
    "grpcio",
    "googleapis-common-protos",
    "fastapi",
    "uvicorn",
    "psycopg[binary]",
    "prometheus-client",
    "genai-prices",
    "rich",
    "fpdf2",
    "croniter",
}
# Installed only by the receiver's stack (grpcio, protobuf and opentelemetry-proto also come with the OTLP exporter).
RECEIVER_ONLY = {
    "pyyaml",
    "fastapi",
    "starlette",
    "uvicorn",
    "psycopg",
    "psycopg-binary",
    "prometheus-client",
    "genai-prices",
    "rich",
    "fpdf2",
    "croniter",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=out,
    )
    (built,) = out.glob("llmtally-*.whl")
    return built


@pytest.fixture(scope="module")
def app_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding what an app installs: `pip install llmtally` (base dependencies from PyPI) and an HTTP
    client (httpx). Returns its python."""
    venv = tmp_path_factory.mktemp("app-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    subprocess.run([*pip, str(wheel), "httpx"], check=True, capture_output=True, timeout=300)
    return python


def _requirements(wheel: Path) -> dict[str, set[str]]:
    """Requirement names of the wheel's metadata, by extra ("" for the base dependencies)."""
    archive = zipfile.ZipFile(wheel)
    metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    found: dict[str, set[str]] = {}
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist: "):
            requirement, _, marker = line.removeprefix("Requires-Dist: ").partition(";")
            extra = re.search(r'extra == "([^"]+)"', marker)
            name = re.match(r"[A-Za-z0-9._-]+(\[[a-z,]+\])?", requirement.strip())
            assert name is not None, line
            found.setdefault(extra.group(1) if extra else "", set()).add(name.group(0).lower())
    return found


def test_the_app_install_brings_only_the_app_side(wheel):
    requirements = _requirements(wheel)
    assert requirements[""] == APP_DEPENDENCIES
    assert requirements["serve"] == SERVE_DEPENDENCIES
    assert "llmtally[serve]" in requirements["demo"]  # `pip install -e '.[demo]' && llmtally demo` runs a receiver
    assert "llmtally[demo,serve]" in requirements["test"]
    assert "opentelemetry-instrumentation-httpx" in requirements["test"]


def _installed(python: Path) -> set[str]:
    code = "import json, importlib.metadata as m; print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"
    run = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return {name.lower().replace("_", "-") for name in json.loads(run.stdout)}


def test_a_fresh_app_install_has_no_receiver_dependency(app_venv):
    installed = _installed(app_venv)
    assert {"llmtally", "opentelemetry-distro", "opentelemetry-exporter-otlp-proto-grpc", "wrapt"} <= installed
    assert not installed & RECEIVER_ONLY, installed & RECEIVER_ONLY


def test_the_app_side_loads_without_the_receiver(app_venv, tmp_path):
    """`import llmtally`, `instrument()` and every llmtally entry point the launcher loads, in the light venv."""
    code = (
        "import json, sys, importlib.metadata as m, llmtally; llmtally.instrument();"
        "eps = [e for e in m.entry_points(group='opentelemetry_instrumentor') if e.value.startswith('llmtally.')];"
        "[e.load() for e in eps]; llmtally.uninstrument();"
        "print(json.dumps({'entry_points': sorted(e.name for e in eps), 'modules': sorted(sys.modules)}))"
    )
    run = subprocess.run([str(app_venv), "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr
    loaded = json.loads(run.stdout)
    assert loaded["entry_points"] == [
        "llmtally_anthropic",
        "llmtally_botocore",
        "llmtally_google_genai",
        "llmtally_http",
        "llmtally_openai",
    ]
    modules = {name.partition(".")[0] for name in loaded["modules"]}
    assert not modules & SERVE_MODULES, modules & SERVE_MODULES
    assert "llmtally.instrumentation.transport.httpx" in loaded["modules"]


_APP = """
import os, httpx
body = {"model": "llama-3.3-70b", "messages": [{"role": "user", "content": "hi"}]}
answer = httpx.post(os.environ["BASE_URL"] + "/v1/chat/completions", json=body, timeout=10)
print(answer.json()["usage"]["prompt_tokens"])
"""


def test_a_light_app_runs_under_the_launcher_and_exports(app_venv, provider, tmp_path):
    """The launcher with the distro's defaults (OTLP/gRPC) works from the light install: one LLM call -> one span,
    one audit event."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMTALLY_"))}
    with OTLPSink() as sink:
        run = subprocess.run(
            [str(app_venv.with_name("opentelemetry-instrument")), str(app_venv), "-c", _APP],
            env=env | {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint, "BASE_URL": provider.base_url},
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
    assert [scope for scope, _ in sink.spans()] == ["llmtally"], run.stderr
    assert [r.event_name for r in sink.log_records()] == ["llmtally.completion"]
    assert provider.requests[-1].path == "/v1/chat/completions"


def test_the_commands_ask_for_the_serve_extra(app_venv, tmp_path):
    command = str(app_venv.with_name("llmtally"))
    version = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("llmtally "), version.stderr
    for args in (
        ["serve"],
        ["usage"],
        ["demo"],
        ["bundle", "stack"],
        ["report", "--month", "2026-11"],
        ["tail"],
        ["forget", "--user", "u"],
        ["operations"],
    ):
        run = subprocess.run([command, *args], capture_output=True, text=True, cwd=tmp_path, timeout=30)
        assert run.returncode == 1, (args, run.stdout, run.stderr)
        assert "pip install 'llmtally[serve]'" in run.stderr, run.stderr
        assert "Traceback" not in run.stderr


def test_wheel_has_the_packages_and_entry_points(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "llmtally/__init__.py",
        "llmtally/cli.py",
        "llmtally/demo/fake_provider.py",
        "llmtally/instrumentation/call.py",
        "llmtally/instrumentation/openai/__init__.py",
        "llmtally/instrumentation/anthropic/__init__.py",
        "llmtally/instrumentation/transport/httpx.py",
        "llmtally/exporter/__init__.py",
        "llmtally/commands/bundle.py",
        "llmtally/commands/stack.py",
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
        "llmtally_google_genai = llmtally.instrumentation.google_genai:GoogleGenAIInstrumentor",
        "llmtally_botocore = llmtally.instrumentation.botocore:BotocoreInstrumentor",
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


# --- the stack files and `llmtally bundle` from the installed wheel ------------------------------------------------

# What ships, by its path in the repository (the one copy): everything in these folders, nothing else of them.
STACK = (
    "grafana-dashboards/docker-compose.yml",
    "grafana-dashboards/prometheus.yml",
    "grafana-dashboards/dashboards/*.json",
    "grafana-dashboards/provisioning/*/*",
    "alert-rules/*.rules.yml",
    "alert-rules/alertmanager.yml",
    "otel-collector-config.yaml",
    "otel-collector-loadbalancing.yaml",
)


def test_wheel_has_the_stack_files(wheel):
    """Each stack file of the repository is in the wheel under llmtally/stack/, byte for byte, and nothing else is
    (no build.py, schema check, rule tests or README)."""
    archive = zipfile.ZipFile(wheel)
    shipped = {n.removeprefix("llmtally/stack/"): n for n in archive.namelist() if n.startswith("llmtally/stack/")}
    expected = {str(p.relative_to(ROOT)) for pattern in STACK for p in ROOT.glob(pattern) if p.is_file()}
    assert {"grafana-dashboards/dashboards/overview.json", "alert-rules/alertmanager.yml"} <= expected
    assert set(shipped) == expected
    for path in expected:
        assert archive.read(shipped[path]) == (ROOT / path).read_bytes(), path


@pytest.fixture(scope="module")
def serve_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with `pip install 'llmtally[serve]'` from the wheel (dependencies from PyPI). Returns its
    `llmtally` command."""
    venv = tmp_path_factory.mktemp("serve-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q"]
    subprocess.run([*pip, f"{wheel}[serve]"], check=True, capture_output=True, timeout=600)
    return venv / "bin" / "llmtally"


@pytest.fixture(scope="module")
def compose_spec() -> dict:
    return compose_schema()


@pytest.fixture(scope="module")
def otelcol() -> Path:
    return build_collector()


def _bundle(command: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMTALLY_")}
    return subprocess.run(
        [str(command), "bundle", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def _tokens(out: str) -> dict[str, str]:
    return dict(re.findall(r"export (LLMTALLY_\w+_TOKEN)=(\S+)", out))


def test_bundle_from_the_installed_wheel_is_valid(serve_venv, tmp_path, compose_spec, otelcol):
    run = _bundle(serve_venv, tmp_path, "stack")
    assert run.returncode == 0, run.stderr
    check_bundle(tmp_path / "stack", compose_spec, otelcol, _tokens(run.stdout))
    dashboards = sorted(p.name for p in (tmp_path / "stack" / "grafana" / "dashboards").glob("*.json"))
    assert dashboards == sorted(p.name for p in (ROOT / "grafana-dashboards" / "dashboards").glob("*.json"))


def test_bundle_from_the_installed_wheel_applies_llmtally_yaml(serve_venv, tmp_path):
    (tmp_path / "llmtally.yaml").write_text(
        "receiver:\n  otlp_grpc: 127.0.0.1:5500\n  http: 127.0.0.1:9500\n"
        "alerts:\n  thresholds:\n    spend_daily_high_usd: 40\n"
    )
    run = _bundle(serve_venv, tmp_path, "stack", "--config", "llmtally.yaml")
    assert run.returncode == 0, run.stderr
    stack = tmp_path / "stack"
    compose = yaml.safe_load((stack / "compose.yaml").read_text())
    assert compose["services"]["collector"]["environment"]["LLMTALLY_OTLP_ENDPOINT"] == "llmtally:5500"
    assert compose["services"]["grafana"]["environment"]["LLMTALLY_API_URL"] == "http://llmtally:9500"
    prometheus = yaml.safe_load((stack / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["scrape_configs"][0]["static_configs"] == [{"targets": ["llmtally:9500"]}]
    served = yaml.safe_load((stack / "llmtally" / "llmtally.yaml").read_text())
    assert served["receiver"]["http"] == "0.0.0.0:9500"
    assert served["alerts"]["thresholds"] == {"spend_daily_high_usd": 40}
    assert "| `spend_daily_high_usd` | 40 |" in (stack / "README.md").read_text()


def test_bundle_from_the_installed_wheel_refuses_to_overwrite(serve_venv, tmp_path):
    assert _bundle(serve_venv, tmp_path, "stack").returncode == 0
    before = (tmp_path / "stack" / "llmtally" / "llmtally.yaml").read_text()
    again = _bundle(serve_venv, tmp_path, "stack")
    assert again.returncode == 1 and "--force" in again.stderr, again.stderr
    assert (tmp_path / "stack" / "llmtally" / "llmtally.yaml").read_text() == before
    forced = _bundle(serve_venv, tmp_path, "stack", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "stack" / "llmtally" / "llmtally.yaml").read_text() != before  # new tokens, new hashes
