"""What `llmtally bundle` writes: the stack files shipped in the package, laid out for one compose file, with the
user's llmtally.yaml applied where it matters.

The files are copied from the repository's top-level folders into `llmtally/stack/` when the package is built
(setup.py): the dashboards and provisioning, the Prometheus config, the rule files, `alertmanager.yml`, the collector
configs and the compose template. Applied from llmtally.yaml: the receiver's ports (the collector's endpoint,
Prometheus's target, Grafana's API URL, the published port, the health check), its TLS (the collector's and
Prometheus's TLS settings, the mounted certificates) and its tokens (by their sha256 only). The alert thresholds need
nothing: the rules read them at run time from `completion_alert_threshold`.
"""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata, resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from llmtally.exporter.api.auth import parse_tokens
from llmtally.exporter.budgets.config import BudgetSettings
from llmtally.exporter.config import Config, ConfigError, load, split_address
from llmtally.exporter.price import PricingConfig
from llmtally.exporter.receive.credentials import Senders
from llmtally.exporter.tokens import MIN_LENGTH, digest

COMPOSE = "compose.yaml"
TLS_DIR = "/etc/llmtally/tls"  # where ./tls is mounted in every container that speaks TLS to the receiver
API_TOKEN = "LLMTALLY_API_TOKEN"
INGEST_TOKEN = "LLMTALLY_INGEST_TOKEN"
_TEMPLATE = "grafana-dashboards/docker-compose.yml"
_PROMETHEUS = "grafana-dashboards/prometheus.yml"
# Shipped path (prefix) -> bundle path (prefix), for the files written as they are.
_COPIED = (
    ("grafana-dashboards/dashboards/", "grafana/dashboards/"),
    ("grafana-dashboards/provisioning/", "grafana/provisioning/"),
    ("alert-rules/alertmanager.yml", "alertmanager/alertmanager.yml"),
    ("otel-collector-", "collector/otel-collector-"),
)
_RULES = re.compile(r"alert-rules/([^/]+\.rules\.yml)")


def shipped() -> Traversable:
    """The stack files in the installed package (`llmtally/stack/<path in the repository>`)."""
    return resources.files("llmtally") / "stack"


def shipped_files() -> dict[str, bytes]:
    """Every shipped file by its path in the repository."""
    found: dict[str, bytes] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.is_file():
                found[f"{prefix}{child.name}"] = child.read_bytes()

    root = shipped()
    if not root.is_dir():
        raise ConfigError("this llmtally was installed without its stack files (llmtally/stack): reinstall it")
    walk(root, "")
    return found


@dataclass
class StackToken:
    """A token the stack needs: the environment variable compose passes on, the llmtally.yaml entry holding its
    sha256, and its value when known (given in the environment, generated now, or plain in llmtally.yaml)."""

    variable: str
    section: str
    name: str
    value: str | None
    origin: str  # "environment" | "generated" | "llmtally.yaml"


@dataclass(frozen=True)
class Settings:
    """What the bundle takes from llmtally.yaml."""

    source: str | None
    raw: Mapping[str, Any]
    grpc_port: int
    http_port: int
    tls: bool
    mutual: bool
    thresholds: Mapping[str, float]
    own_store: bool  # the file names a store (the stack uses its own PostgreSQL instead)

    @classmethod
    def read(cls, path: str | None, environ: Mapping[str, str]) -> Settings:
        """llmtally.yaml (`path`, else $LLMTALLY_CONFIG, else ./llmtally.yaml if present, else the defaults),
        checked as `serve` checks it, except the TLS files (the stack mounts its own)."""
        config = load(path, env={k: v for k, v in environ.items() if k == "LLMTALLY_CONFIG"})
        raw: Mapping[str, Any] = {}
        if config.path:
            raw = yaml.safe_load(Path(config.path).read_text()) or {}
        _check(config)
        return cls(
            source=config.path,
            raw=raw,
            grpc_port=split_address(config.otlp_grpc, "receiver.otlp_grpc")[1],
            http_port=split_address(config.http, "receiver.http")[1],
            tls=bool(config.tls_cert_file or config.tls_key_file or config.tls_client_ca_file),
            mutual=bool(config.tls_client_ca_file),
            thresholds=BudgetSettings.from_config(config).thresholds,
            own_store=bool(raw.get("store")),
        )

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


def _check(config: Config) -> None:
    parse_tokens(config.api_tokens)
    Senders.parse(config.ingest_tokens)
    PricingConfig.from_dict(config.pricing)
    tls = (config.tls_cert_file, config.tls_key_file, config.tls_client_ca_file)
    if any(tls) and not (config.tls_cert_file and config.tls_key_file):
        raise ConfigError("receiver.tls needs both cert_file and key_file (client_ca_file alone is not enough)")


@dataclass
class Bundle:
    files: dict[str, bytes] = field(default_factory=dict)  # bundle path -> content
    tokens: list[StackToken] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    private: set[str] = field(default_factory=set)  # written with mode 600


def build(settings: Settings, environ: Mapping[str, str], *, write_tokens: bool = False) -> Bundle:
    """Every file of the bundle, by its path in DIR."""
    bundle = Bundle()
    source = shipped_files()
    for path, content in sorted(source.items()):
        target = _target(path)
        if target is not None:
            bundle.files[target] = content
    raw = dict(settings.raw)
    api, api_token = _tokens(raw.get("api") or {}, "tokens", "api.tokens", API_TOKEN, "grafana", environ, role="admin")
    receiver = dict(raw.get("receiver") or {})
    ingest, ingest_token = _tokens(
        receiver, "ingest_tokens", "receiver.ingest_tokens", INGEST_TOKEN, "collector", environ
    )
    bundle.tokens = [api_token, ingest_token]
    bundle.files["llmtally/llmtally.yaml"] = _serve_config(settings, raw, api, ingest).encode()
    bundle.files["llmtally/Dockerfile"] = _dockerfile().encode()
    bundle.files[COMPOSE] = _compose(settings, source[_TEMPLATE]).encode()
    bundle.files["prometheus/prometheus.yml"] = _prometheus(settings, source[_PROMETHEUS]).encode()
    if settings.tls:
        bundle.files["tls/README.md"] = _tls_readme(settings).encode()
    if write_tokens:
        bundle.files[".env"] = _dotenv(bundle.tokens).encode()
        bundle.private.add(".env")
    bundle.files["README.md"] = _readme(settings, bundle).encode()
    if settings.own_store:
        bundle.notes.append(
            "the store of llmtally.yaml is not used: the stack runs its own PostgreSQL (LLMTALLY_STORE in compose.yaml)"
        )
    return bundle


def _target(path: str) -> str | None:
    """Where a shipped file goes in the bundle (None: rendered, not copied)."""
    rules = _RULES.fullmatch(path)
    if rules:
        return f"prometheus/rules/{rules.group(1)}"
    for prefix, target in _COPIED:
        if path.startswith(prefix):
            return target + path[len(prefix) :]
    return None


# --- tokens -------------------------------------------------------------------------------------------------------


def _tokens(
    section: Mapping[str, Any],
    key: str,
    where: str,
    variable: str,
    name: str,
    environ: Mapping[str, str],
    **grant: str,
) -> tuple[list[dict[str, Any]], StackToken]:
    """The entries of `section[key]` with every plain token replaced by its sha256, and the stack's token among
    them: the one in $variable (added when no entry has it), else the entry named `name`, else a new one."""
    entries = [dict(entry) for entry in (section.get(key) or [])]
    for entry in entries:
        if "token" in entry:
            entry["token_sha256"] = digest(str(entry.pop("token")))
    given = environ.get(variable)
    if given:
        if len(given) < MIN_LENGTH:
            raise ConfigError(f"${variable} must be at least {MIN_LENGTH} characters long")
        taken = {str(e.get("name")) for e in entries}
        if not any(e.get("token_sha256", "").lower() == digest(given) for e in entries):
            unique = name if name not in taken else f"{name}-stack"
            entries.append({"name": unique, **grant, "token_sha256": digest(given)})
        return entries, StackToken(variable, where, name, given, "environment")
    for original in section.get(key) or []:
        if original.get("name") == name:
            return entries, StackToken(variable, where, name, original.get("token"), "llmtally.yaml")
    value = secrets.token_urlsafe(32)
    entries.append({"name": name, **grant, "token_sha256": digest(value)})
    return entries, StackToken(variable, where, name, value, "generated")


def _dotenv(tokens: Sequence[StackToken]) -> str:
    lines = ["# The secrets compose.yaml reads, written by `llmtally bundle --write-tokens`. Keep this file private."]
    for token in tokens:
        if token.value is None:
            lines.append(f"# {token.variable}=   (the token of {token.section} entry {token.name!r}: set it yourself)")
        else:
            lines.append(f"{token.variable}={token.value}")
    return "\n".join(lines) + "\n"


# --- the rendered files -------------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style with indented lists; short lists of scalars (commands, ports, targets) on one line; port
    mappings quoted, as compose files write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _sequence(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    short = all(isinstance(item, (str, int, float)) for item in data) and sum(len(str(i)) + 2 for i in data) <= 72
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=short)


def _string(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    port = ":" in data and re.fullmatch(r"[0-9.:]+(/[a-z]+)?", data) is not None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"' if port else None)


_Dumper.add_representer(list, _sequence)
_Dumper.add_representer(str, _string)


def _dump(document: Any) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)


def _serve_config(settings: Settings, raw: Mapping[str, Any], api: list[Any], ingest: list[Any]) -> str:
    receiver = {k: v for k, v in (raw.get("receiver") or {}).items() if k not in ("tls", "ingest_tokens")}
    receiver["otlp_grpc"] = f"0.0.0.0:{settings.grpc_port}"
    receiver["http"] = f"0.0.0.0:{settings.http_port}"
    receiver["ingest_tokens"] = ingest
    if settings.tls:
        receiver["tls"] = {"cert_file": f"{TLS_DIR}/server.crt", "key_file": f"{TLS_DIR}/server.key"}
        if settings.mutual:
            receiver["tls"]["client_ca_file"] = f"{TLS_DIR}/client-ca.crt"
    document: dict[str, Any] = {"receiver": receiver, "api": {**(raw.get("api") or {}), "tokens": api}}
    document.update({k: copy.deepcopy(v) for k, v in raw.items() if k not in ("store", "receiver", "api")})
    header = (
        f"# `llmtally serve` in the stack (compose.yaml), written by `llmtally bundle` from "
        f"{settings.source or 'the defaults'}.\n"
        "# The listen addresses are the container's; the store is LLMTALLY_STORE (compose.yaml: the stack's\n"
        "# PostgreSQL); tokens are given by their sha256 only. Alert thresholds: alerts.thresholds (restart the\n"
        "# llmtally service after a change; the rule files read them at run time).\n"
    )
    return header + _dump(document)


def _dockerfile() -> str:
    version = metadata.version("llmtally")
    return (
        "# `llmtally serve` for compose.yaml: llmtally from PyPI at the version that wrote this bundle.\n"
        "# Another version or a wheel of your own: docker compose build --build-arg LLMTALLY_REQUIREMENT=...\n"
        "FROM python:3.11-slim\n"
        f'ARG LLMTALLY_REQUIREMENT="llmtally[serve]=={version}"\n'
        'RUN pip install --no-cache-dir "${LLMTALLY_REQUIREMENT}" \\\n'
        " && useradd --system --uid 10001 --no-create-home llmtally\n"
        "USER llmtally\n"
        "WORKDIR /tmp\n"
        "EXPOSE 4317 4318\n"
        'CMD ["llmtally", "serve", "--config", "/etc/llmtally/llmtally.yaml"]\n'
    )


def _compose(settings: Settings, template: bytes) -> str:
    document = yaml.safe_load(template)
    services = document["services"]
    grpc, http, scheme = settings.grpc_port, settings.http_port, settings.scheme
    collector, serve, grafana = services["collector"], services["llmtally"], services["grafana"]
    collector["environment"]["LLMTALLY_OTLP_ENDPOINT"] = f"llmtally:{grpc}"
    serve["ports"] = [_republish(port, http) for port in serve.get("ports", [])]
    serve["healthcheck"]["test"] = ["CMD", "python", "-c", _probe(settings)]
    grafana["environment"]["LLMTALLY_API_URL"] = f"{scheme}://llmtally:{http}"
    if settings.tls:
        environment = collector["environment"]
        environment["LLMTALLY_TLS_INSECURE"] = "false"
        environment["LLMTALLY_TLS_CA_FILE"] = f"{TLS_DIR}/ca.crt"
        if settings.mutual:
            environment["LLMTALLY_TLS_CERT_FILE"] = f"{TLS_DIR}/client.crt"
            environment["LLMTALLY_TLS_KEY_FILE"] = f"{TLS_DIR}/client.key"
        for name in ("collector", "llmtally", "prometheus", "grafana"):
            services[name].setdefault("volumes", []).append(f"./tls:{TLS_DIR}:ro")
    for name, volume in (document.get("volumes") or {}).items():
        document["volumes"][name] = volume or {}
    header = (
        f"# The llmtally stack, written by `llmtally bundle` {metadata.version('llmtally')} from "
        f"{settings.source or 'the defaults'}; README.md beside it says what each file is.\n"
        "# Apps export OTLP to the collector (4317 gRPC, 4318 HTTP) -> llmtally serve (PostgreSQL store, API on\n"
        f"# {settings.scheme}://localhost:8000) <- Prometheus (:9090) -> Alertmanager (:9093); Grafana on :3000.\n"
        f"# Secrets come from the environment or .env beside this file: {API_TOKEN}, {INGEST_TOKEN}.\n"
        "#   docker compose -f compose.yaml up -d --build\n"
    )
    return header + _spaced(_dump(document))


def _republish(port: Any, container_port: int) -> str:
    """A `HOST:CONTAINER` port of the template with the receiver's HTTP port as the container's."""
    host, _, _ = str(port).rpartition(":")
    return f"{host}:{container_port}" if host else str(container_port)


def _probe(settings: Settings) -> str:
    """The health check: the receiver's /readyz from inside its container (verified TLS when it speaks TLS)."""
    if not settings.tls:
        url = f"http://127.0.0.1:{settings.http_port}/readyz"
        return f"import urllib.request; urllib.request.urlopen('{url}', timeout=5)"
    client = f"c.load_cert_chain('{TLS_DIR}/client.crt', '{TLS_DIR}/client.key'); " if settings.mutual else ""
    return (
        f"import ssl, urllib.request; c = ssl.create_default_context(cafile='{TLS_DIR}/ca.crt'); {client}"
        f"urllib.request.urlopen('https://llmtally:{settings.http_port}/readyz', context=c, timeout=5)"
    )


def _spaced(text: str) -> str:
    """A blank line before each top-level key and each service, for reading."""
    out: list[str] = []
    for line in text.splitlines():
        top = not line.startswith((" ", "-", "#"))
        service = re.match(r"^  [A-Za-z0-9_.-]+:$", line) is not None
        if out and (top or service) and not out[-1].endswith("services:"):
            out.append("")
        out.append(line)
    return "\n".join(out) + "\n"


def _prometheus(settings: Settings, template: bytes) -> str:
    document = yaml.safe_load(template)
    jobs = [job for job in document.get("scrape_configs", []) if job.get("job_name") == "llmtally"]
    if len(jobs) != 1:
        raise ConfigError("the shipped prometheus.yml has no scrape job `llmtally`: reinstall llmtally")
    job = jobs[0]
    job["static_configs"] = [{"targets": [f"llmtally:{settings.http_port}"]}]
    if settings.tls:
        job["scheme"] = "https"
        job["tls_config"] = {"ca_file": f"{TLS_DIR}/ca.crt", "server_name": "llmtally"}
        if settings.mutual:
            job["tls_config"] |= {"cert_file": f"{TLS_DIR}/client.crt", "key_file": f"{TLS_DIR}/client.key"}
    header = (
        "# Prometheus for the llmtally stack (written by `llmtally bundle`): scrapes llmtally serve in the job\n"
        "# `llmtally` (the receiver-down alerts select that name), loads rules/*.rules.yml, alerts Alertmanager.\n"
    )
    return header + _dump(document)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _tls_readme(settings: Settings) -> str:
    rows = [
        (
            "`server.crt`, `server.key`",
            "the receiver's certificate (chain) and key; the certificate must name `llmtally`, the host the other "
            "containers reach it by",
        ),
        (
            "`ca.crt`",
            "the CA that signed `server.crt`: the collector, Prometheus and the health check trust it (it is "
            "mounted for Grafana's API datasource too)",
        ),
    ]
    if settings.mutual:
        rows += [
            ("`client-ca.crt`", "the CA the receiver requires client certificates from (`client_ca_file`)"),
            (
                "`client.crt`, `client.key`",
                "a client certificate it signed, for the collector, Prometheus and the health check",
            ),
        ]
    return f"""# TLS files of the stack

llmtally.yaml sets `receiver.tls`, so the receiver speaks TLS on both ports. Put here (mounted read-only at
`{TLS_DIR}` in the llmtally, collector, Prometheus and Grafana containers):

{_table(("file", "what"), rows)}

`llmtally bundle` copies no certificate and no key: they stay where you keep them.
"""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _token_line(token: StackToken, env_file: bool) -> str:
    where = f"its sha256 is in `{token.section}`"
    if token.origin == "environment":
        return f"- `{token.variable}`: taken from the environment (or `.env`) when the bundle was written; {where}"
    if token.origin == "generated":
        kept = "printed once, and in `.env`" if env_file else "printed once"
        return f"- `{token.variable}`: generated by `llmtally bundle` ({kept}); {where} as `{token.name}`"
    return f"- `{token.variable}`: the token of the `{token.section}` entry `{token.name}` of your llmtally.yaml"


def _readme(settings: Settings, bundle: Bundle) -> str:
    version = metadata.version("llmtally")
    http, scheme = settings.http_port, settings.scheme
    services = [
        (
            "`collector`",
            "OpenTelemetry Collector (contrib): OTLP in, memory limit, batches, to llmtally",
            "apps: `OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317` (4318: OTLP/HTTP)",
        ),
        (
            "`llmtally`",
            "`llmtally serve`, built from `llmtally/Dockerfile`",
            f"API, `/metrics` on {scheme}://localhost:8000",
        ),
        ("`postgres`", "the audit store", "inside the stack only (`LLMTALLY_DB_PASSWORD`, default `llmtally`)"),
        ("`prometheus`", "scrapes llmtally (job `llmtally`); the recording and alert rules", "http://localhost:9090"),
        ("`alertmanager`", "routes the alerts (`alertmanager/alertmanager.yml`)", "http://localhost:9093"),
        (
            "`grafana`",
            'the dashboards (folder "LLM"), the Infinity plugin, the provisioned datasources',
            "http://localhost:3000 (admin / `GRAFANA_ADMIN_PASSWORD`, default `admin`)",
        ),
    ]
    files = [
        ("`compose.yaml`", "the stack; secrets only from the environment or `.env`"),
        (
            "`llmtally/llmtally.yaml`",
            f"`llmtally serve`'s configuration: yours, with the container's addresses (0.0.0.0:{settings.grpc_port} "
            f"gRPC, 0.0.0.0:{http} HTTP) and every token as its sha256",
        ),
        ("`llmtally/Dockerfile`", f"python:3.11-slim with `llmtally[serve]=={version}`"),
        (
            "`collector/otel-collector-config.yaml`",
            "the collector's pipeline (the one compose runs); `otel-collector-loadbalancing.yaml` for N receivers",
        ),
        ("`prometheus/prometheus.yml`, `prometheus/rules/`", f"the scrape of `llmtally:{http}`, the rule files"),
        (
            "`alertmanager/alertmanager.yml`",
            "routing by team, environment and severity: replace the example webhook receivers with yours",
        ),
        (
            "`grafana/provisioning/`, `grafana/dashboards/`",
            "the datasources (URLs and the API token from the environment compose sets), the dashboards",
        ),
    ]
    tls = (
        "\nThe receiver speaks TLS (`receiver.tls` in llmtally.yaml): put the certificates in `tls/` (see "
        "`tls/README.md`) before starting.\n"
        if settings.tls
        else ""
    )
    tokens = "\n".join(_token_line(token, ".env" in bundle.files) for token in bundle.tokens)
    thresholds = [(f"`{key}`", _number(value)) for key, value in settings.thresholds.items()]
    return f"""# The llmtally stack

Written by `llmtally bundle` {version} from {settings.source or "the defaults (no llmtally.yaml)"}. One compose file
starts everything:

```bash
export {API_TOKEN}=...  {INGEST_TOKEN}=...     # or keep them in .env beside compose.yaml
docker compose -f compose.yaml up -d --build
```

{_table(("service", "what", "where"), services)}

## Files

{_table(("path", "what"), files)}
{tls}
## Tokens

Grafana reads the llmtally API with `{API_TOKEN}` (an admin token), the collector writes with `{INGEST_TOKEN}`.
No token value is in these files (`.env` only when written with `--write-tokens`): compose passes them from the
environment, and `llmtally/llmtally.yaml` holds their sha256.

{tokens}

## Alert thresholds

The rule files need no edit: every threshold is read at run time from `completion_alert_threshold{{alert="..."}}`,
which `llmtally serve` exports from `alerts.thresholds` in `llmtally/llmtally.yaml`. Change a value there and run
`docker compose -f compose.yaml restart llmtally`. In effect now:

{_table(("threshold", "value"), thresholds)}

## Changing the bundle

`llmtally bundle DIR --config llmtally.yaml --force` writes every file above again (files you added stay; a file
the new bundle no longer has stays too: remove it). Without {API_TOKEN} and {INGEST_TOKEN} in its environment (or
entries named `grafana` and `collector` in llmtally.yaml) it generates new tokens. The dashboards, rules and configs
are the ones of the installed llmtally: upgrade it, then write the bundle again.
"""
