"""What makes a bundle written by `llmtally bundle` valid, checked without Docker (none runs here): the compose file
against the Compose Specification's JSON schema and the references inside it (mounts, build context, services,
volumes, every variable Grafana's provisioning reads), the Prometheus config and rules with `promtool`, the
Alertmanager config with `amtool`, both collector configs with the test collector's `validate` under the environment
compose gives it, the dashboards' JSON, and `llmtally serve`'s configuration with llmtally's own loader.

The schema is `schema/compose-spec.json` of the Go module github.com/compose-spec/compose-go/v2 (Apache-2.0, the
module's LICENSE; the schema is the Compose Specification's, which that module vendors and Docker Compose validates
with), fetched from the Go module proxy with `go mod download` (cached in Go's module cache) by `compose_schema()`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from collector import ROOT, validate
from llmtally.exporter.api.auth import parse_tokens
from llmtally.exporter.config import Config, load
from llmtally.exporter.receive.credentials import Senders

COMPOSE_GO = "github.com/compose-spec/compose-go/v2@v2.16.2"
SERVICES = {"collector", "llmtally", "postgres", "prometheus", "alertmanager", "grafana"}
INFINITY = re.compile(r"yesoreyeram-infinity-datasource[ @](\d+\.\d+\.\d+)")
_REFERENCE = re.compile(r"\$(?:__env\{(\w+)\}|\{(\w+)(?:[:?+-][^}]*)?\}|([A-Za-z_]\w*))")
_INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def compose_schema() -> dict[str, Any]:
    """The Compose Specification's JSON schema, from the compose-go module (fails the test without Go)."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("Go is needed to fetch the compose-go module (its schema): see collector/README.md")
    run = subprocess.run(  # outside any Go module: only the download, into Go's module cache
        [go, "mod", "download", "-json", COMPOSE_GO],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tempfile.gettempdir(),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    module = Path(json.loads(run.stdout)["Dir"])
    assert "Apache License" in (module / "LICENSE").read_text()
    schema: dict[str, Any] = json.loads((module / "schema" / "compose-spec.json").read_text())
    return schema


def provisioning_variables(directory: Path) -> set[str]:
    """The environment variables Grafana's provisioning files in `directory` read ($VAR, ${VAR}, ${VAR:-default},
    $__env{VAR}); comments skipped, $$ is a literal dollar."""
    found: set[str] = set()
    for path in sorted(directory.rglob("*.y*ml")):
        for line in path.read_text().splitlines():
            text = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
            for match in _REFERENCE.finditer(text.replace("$$", "")):
                name = match.group(1) or match.group(2) or match.group(3)
                if not name.startswith("__"):
                    found.add(name)
    return found


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of `value` (${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error})."""

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        given = env.get(name)
        unset = given is None or (given == "" and operator is not None and operator.startswith(":"))
        if operator is not None and operator.endswith("?") and unset:
            raise AssertionError(f"compose would stop: {name} is required ({argument})")
        if operator is not None and operator.endswith("-") and unset:
            return argument
        return given or ""

    return _INTERPOLATION.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def environment(service: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """A service's container environment after interpolation with `env` (compose's shell or .env)."""
    given = service.get("environment") or {}
    if isinstance(given, list):
        given = dict(item.split("=", 1) for item in given)
    return {name: interpolate(str(value), env) for name, value in given.items()}


def compose_file(bundle: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((bundle / "compose.yaml").read_text())
    return document


def serve_config(bundle: Path) -> Config:
    return load(str(bundle / "llmtally" / "llmtally.yaml"), env={})


def check_compose(bundle: Path, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The compose file: the schema, pinned images, and every reference resolved inside the bundle."""
    compose = compose_file(bundle)
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    services = compose["services"]
    assert set(services) == SERVICES
    named = set(compose.get("volumes") or {})
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image} is not pinned"
        for dependency in service.get("depends_on") or []:
            assert dependency in services, f"{name} depends on {dependency}, not a service"
        for volume in service.get("volumes") or []:
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                assert source.startswith("./"), f"{name}: {source} is not inside the bundle"
                assert (bundle / source).exists(), f"{name}: mount source {source} is not in the bundle"
            else:
                assert source in named, f"{name}: volume {source} is not declared"
            assert target.startswith("/"), volume
        build = service.get("build")
        if build is not None:
            context = bundle / (build if isinstance(build, str) else build["context"])
            assert (context / "Dockerfile").is_file(), f"{name}: no Dockerfile in {context}"
    return compose


def check_versions(bundle: Path, compose: Mapping[str, Any]) -> None:
    """Grafana 11.x with the Infinity plugin pinned, at the version the provisioning names if it names one; the
    collector image at the release the tests build."""
    services = compose["services"]
    assert re.fullmatch(r"grafana/grafana:11\.\d+\.\d+", services["grafana"]["image"])
    plugins = str(services["grafana"]["environment"]["GF_INSTALL_PLUGINS"])
    pinned = INFINITY.fullmatch(plugins)
    assert pinned, plugins
    provisioning = bundle / "grafana" / "provisioning"
    named = {v for p in provisioning.rglob("*.y*ml") for v in INFINITY.findall(p.read_text())}
    assert named <= {pinned.group(1)}, f"the provisioning names Infinity {named}, compose.yaml installs {plugins}"
    release = re.search(r"loadbalancingexporter v(\S+)", (ROOT / "collector" / "go.mod").read_text())
    assert release is not None
    assert services["collector"]["image"] == f"otel/opentelemetry-collector-contrib:{release.group(1)}"


def check_grafana(bundle: Path, compose: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """Every variable the provisioning reads is set for Grafana; the dashboards are where the provider looks."""
    grafana = compose["services"]["grafana"]
    variables = provisioning_variables(bundle / "grafana" / "provisioning")
    assert variables, "the provisioning reads no environment variable"
    given = environment(grafana, env)
    unset = variables - set(given)
    assert not unset, f"the provisioning reads {sorted(unset)}, which compose.yaml does not set for Grafana"
    assert all(given[name] for name in variables), "a variable the provisioning reads is empty"
    unread = {name for name in given if name.startswith("LLMTALLY_")} - variables
    assert not unread, f"compose.yaml sets {sorted(unread)} for Grafana, which the provisioning does not read"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    for path in sorted((bundle / "grafana" / "provisioning" / "dashboards").glob("*.y*ml")):
        for provider in yaml.safe_load(path.read_text())["providers"]:
            folder = provider["options"]["path"]
            assert folder in mounts, f"the dashboards provider reads {folder}, which is not mounted"
            dashboards = sorted((bundle / mounts[folder]).glob("*.json"))
            assert dashboards
            for dashboard in dashboards:
                document = json.loads(dashboard.read_text())
                assert document["uid"] and document["title"], dashboard


def check_required(bundle: Path, compose: Mapping[str, Any]) -> set[str]:
    """The variables compose requires (${VAR:?...}): each is explained in the bundle's README."""
    required = set(re.findall(r"\$\{(\w+):?\?", (bundle / "compose.yaml").read_text()))
    readme = (bundle / "README.md").read_text()
    for name in required:
        assert name in readme, f"{name} is required by compose.yaml and not explained in README.md"
    return required


def check_prometheus(bundle: Path, promtool: str, replace: Mapping[str, str] | None = None) -> None:
    """`promtool check config` (which checks the rule files it names too) and `promtool check rules`; `replace`
    maps container paths to files here (TLS)."""
    config = bundle / "prometheus" / "prometheus.yml"
    if replace:
        text = config.read_text()
        for old, new in replace.items():
            text = text.replace(old, new)
        config = bundle / "prometheus" / "prometheus.checked.yml"
        config.write_text(text)
    rules = sorted((bundle / "prometheus" / "rules").glob("*.rules.yml"))
    assert [r.name for r in rules] == sorted(r.name for r in (ROOT / "alert-rules").glob("*.rules.yml"))
    run = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(rules)} rule files found" in run.stdout, run.stdout
    run = subprocess.run([promtool, "check", "rules", *map(str, rules)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    if replace:
        config.unlink()


def check_alertmanager(bundle: Path, amtool: str) -> None:
    config = bundle / "alertmanager" / "alertmanager.yml"
    run = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def check_collector(
    bundle: Path, compose: Mapping[str, Any], otelcol: Path, env: Mapping[str, str], replace: Mapping[str, str]
) -> None:
    """Both collector configs validate under the environment compose gives the collector (`replace`: container
    paths -> files here)."""
    given = environment(compose["services"]["collector"], env)
    for name in list(given):
        for old, new in replace.items():
            given[name] = given[name].replace(old, new)
    assert "LLMTALLY_OTLP_ENDPOINT" in given and given["LLMTALLY_INGEST_TOKEN"]
    configs = sorted((bundle / "collector").glob("otel-collector-*.yaml"))
    assert [c.name for c in configs] == ["otel-collector-config.yaml", "otel-collector-loadbalancing.yaml"]
    command = " ".join(compose["services"]["collector"]["command"])
    assert "otel-collector-config.yaml" in command
    for config in configs:
        run = validate(otelcol, config, env=dict(given))
        assert run.returncode == 0, f"{config.name}: {run.stderr}"


def check_serve(bundle: Path, compose: Mapping[str, Any]) -> Config:
    """llmtally serve's configuration loads and its tokens parse; every address in the stack names its ports."""
    config = serve_config(bundle)
    parse_tokens(config.api_tokens)
    assert Senders.parse(config.ingest_tokens).required
    grpc, http = int(config.otlp_grpc.rpartition(":")[2]), int(config.http.rpartition(":")[2])
    assert config.otlp_grpc == f"0.0.0.0:{grpc}" and config.http == f"0.0.0.0:{http}"
    services = compose["services"]
    assert services["collector"]["environment"]["LLMTALLY_OTLP_ENDPOINT"] == f"llmtally:{grpc}"
    scheme = "https" if config.tls_cert_file else "http"
    assert services["grafana"]["environment"]["LLMTALLY_API_URL"] == f"{scheme}://llmtally:{http}"
    assert [str(p).rpartition(":")[2] for p in services["llmtally"]["ports"]] == [str(http)]
    assert f":{http}/readyz" in services["llmtally"]["healthcheck"]["test"][-1]
    prometheus = yaml.safe_load((bundle / "prometheus" / "prometheus.yml").read_text())
    (job,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == "llmtally"]
    assert job["static_configs"] == [{"targets": [f"llmtally:{http}"]}]
    assert job.get("scheme", "http") == scheme
    return config


def check_bundle(
    bundle: Path,
    schema: Mapping[str, Any],
    otelcol: Path,
    env: Mapping[str, str],
    *,
    replace: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Every check above; `env` is what compose would interpolate with (the tokens), `replace` maps the
    containers' TLS paths to files here. Returns the compose file."""
    promtool, amtool = shutil.which("promtool"), shutil.which("amtool")
    if promtool is None or amtool is None:
        pytest.fail("promtool and amtool are needed: bash scripts/test.sh installs them (prometheus, alertmanager)")
    compose = check_compose(bundle, schema)
    check_versions(bundle, compose)
    check_required(bundle, compose)
    check_grafana(bundle, compose, env)
    check_prometheus(bundle, promtool, replace)
    check_alertmanager(bundle, amtool)
    check_collector(bundle, compose, otelcol, env, replace or {})
    check_serve(bundle, compose)
    return compose
