"""`llmtally bundle DIR`: the stack written out of the package is valid (tests/bundle_checks.py: the compose file
against the Compose Specification's schema, promtool, amtool, the collector's validate, the dashboards, the
provisioning's variables), carries the settings of llmtally.yaml (ports, TLS, tokens by their sha256, thresholds in
the README), holds no token value unless asked to, and never overwrites without --force.

These run the command in this process (the development install, whose stack files link to the repository's);
tests/test_packaging.py runs it from an installed wheel."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bundle_checks import check_bundle, check_compose, compose_file, compose_schema, serve_config
from collector import ROOT, build_collector
from llmtally.cli import main
from llmtally.exporter.api.auth import authenticate, parse_tokens
from llmtally.exporter.receive.credentials import Senders
from llmtally.exporter.tokens import digest
from tls_certs import Authority

API_TOKEN = "grafana-api-token-0123456789abcdef"
LAYOUT = {
    "README.md",
    "compose.yaml",
    "llmtally/Dockerfile",
    "llmtally/llmtally.yaml",
    "collector/otel-collector-config.yaml",
    "collector/otel-collector-loadbalancing.yaml",
    "prometheus/prometheus.yml",
    "alertmanager/alertmanager.yml",
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return compose_schema()


@pytest.fixture(scope="module")
def otelcol() -> Path:
    return build_collector()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token or config of the machine's environment, and no ./llmtally.yaml, reaches the command."""
    for name in ("LLMTALLY_API_TOKEN", "LLMTALLY_INGEST_TOKEN", "LLMTALLY_CONFIG", "LLMTALLY_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def bundle(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["bundle", *args])
    out, err = capsys.readouterr()
    return code, out, err


def printed_tokens(out: str) -> dict[str, str]:
    return dict(re.findall(r"export (LLMTALLY_\w+_TOKEN)=(\S+)", out))


def written(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def assert_no_secret(directory: Path, *secrets: str) -> None:
    for path, content in written(directory).items():
        for secret in secrets:
            assert secret.encode() not in content, f"{path} holds a token value"


def test_the_default_bundle_is_valid(tmp_path, capsys, schema, otelcol):
    target = tmp_path / "stack"
    code, out, err = bundle(capsys, str(target))
    assert code == 0, err
    files = written(target)
    expected = LAYOUT | {
        f"grafana/{p.relative_to(ROOT / 'grafana-dashboards')}"
        for pattern in ("dashboards/*.json", "provisioning/*/*.yaml")
        for p in (ROOT / "grafana-dashboards").glob(pattern)
    }
    expected |= {f"prometheus/rules/{p.name}" for p in (ROOT / "alert-rules").glob("*.rules.yml")}
    # A file added to the repository reaches the development install with a reinstall (strict editable mode).
    assert set(files) == expected, "pip install -e '.[test]' --config-settings editable_mode=strict, then again"
    for path in files:
        assert f"  {target / path}\n" in out, path  # it prints what it wrote
    assert f"docker compose -f {target / 'compose.yaml'} up" in out
    tokens = printed_tokens(out)
    assert set(tokens) == {"LLMTALLY_API_TOKEN", "LLMTALLY_INGEST_TOKEN"}
    assert_no_secret(target, *tokens.values())  # printed once, never written
    config = serve_config(target)
    assert authenticate(f"Bearer {tokens['LLMTALLY_API_TOKEN']}", parse_tokens(config.api_tokens)).role == "admin"
    assert Senders.parse(config.ingest_tokens).sender(f"Bearer {tokens['LLMTALLY_INGEST_TOKEN']}").name == "collector"
    assert config.store == "sqlite:///llmtally.db"  # none in the file: compose gives LLMTALLY_STORE
    check_bundle(target, schema, otelcol, tokens)
    # Copied as shipped: the dashboards, the provisioning, the rules, alertmanager.yml, the collector configs.
    assert files["alertmanager/alertmanager.yml"] == (ROOT / "alert-rules" / "alertmanager.yml").read_bytes()
    assert files["collector/otel-collector-config.yaml"] == (ROOT / "otel-collector-config.yaml").read_bytes()
    readme = files["README.md"].decode()
    assert "The rule files need no edit" in readme and "completion_alert_threshold" in readme


def test_the_repository_template_is_a_valid_compose_file(tmp_path, schema):
    """grafana-dashboards/docker-compose.yml (the template, its paths the bundle's) against the schema."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    template = yaml.safe_load((ROOT / "grafana-dashboards" / "docker-compose.yml").read_text())
    assert not list(validator.iter_errors(template))
    # One pin of the Infinity plugin, easy to change.
    text = (ROOT / "grafana-dashboards" / "docker-compose.yml").read_text()
    assert len(re.findall(r"yesoreyeram-infinity-datasource \d+\.\d+\.\d+", text)) == 1


CONFIG = """
store: postgresql://someone:secret@db.example:5432/elsewhere
receiver:
  otlp_grpc: 127.0.0.1:5317
  http: 127.0.0.1:9400
  queue_records: 5000
  ingest_tokens:
    - name: checkout
      token: checkout-ingest-token-0123456789
      services: [checkout]
api:
  tokens:
    - name: alice
      role: member
      user: alice@example.com
      token: alice-api-token-0123456789abcdef
pricing:
  markup: 0.1
budgets:
  - name: monthly-all
    period: monthly
    amount_usd: 500
    team: platform
alerts:
  thresholds:
    spend_daily_high_usd: 40
    error_rate_critical: 0.3
"""


def test_the_settings_of_llmtally_yaml_apply(tmp_path, capsys, monkeypatch, schema, otelcol):
    (tmp_path / "mine.yaml").write_text(CONFIG)
    monkeypatch.setenv("LLMTALLY_API_TOKEN", API_TOKEN)
    target = tmp_path / "stack"
    code, out, err = bundle(capsys, str(target), "--config", str(tmp_path / "mine.yaml"))
    assert code == 0, err
    tokens = printed_tokens(out)
    assert set(tokens) == {"LLMTALLY_INGEST_TOKEN"}  # the API token came from the environment: not printed
    assert API_TOKEN not in out
    assert "the store of llmtally.yaml is not used" in out
    env = {**tokens, "LLMTALLY_API_TOKEN": API_TOKEN}
    compose = check_bundle(target, schema, otelcol, env)

    # The receiver's ports, everywhere the stack names them.
    services = compose["services"]
    assert services["collector"]["environment"]["LLMTALLY_OTLP_ENDPOINT"] == "llmtally:5317"
    assert services["grafana"]["environment"]["LLMTALLY_API_URL"] == "http://llmtally:9400"
    assert services["llmtally"]["ports"] == ["8000:9400"]
    prometheus = yaml.safe_load((target / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["scrape_configs"][0]["static_configs"] == [{"targets": ["llmtally:9400"]}]

    # llmtally serve's file: the user's settings, the container's addresses, no store, tokens by their sha256.
    raw = yaml.safe_load((target / "llmtally" / "llmtally.yaml").read_text())
    assert "store" not in raw
    assert raw["receiver"]["queue_records"] == 5000
    assert raw["pricing"] == {"markup": 0.1}
    assert raw["budgets"][0]["team"] == "platform"
    assert raw["alerts"]["thresholds"] == {"spend_daily_high_usd": 40, "error_rate_critical": 0.3}
    assert raw["receiver"]["ingest_tokens"][0] == {
        "name": "checkout",
        "services": ["checkout"],
        "token_sha256": digest("checkout-ingest-token-0123456789"),
    }
    assert raw["api"]["tokens"][0]["token_sha256"] == digest("alice-api-token-0123456789abcdef")
    config = serve_config(target)
    principals = parse_tokens(config.api_tokens)
    assert authenticate(f"Bearer {API_TOKEN}", principals).role == "admin"
    assert authenticate("Bearer alice-api-token-0123456789abcdef", principals).user == "alice@example.com"
    assert_no_secret(target, API_TOKEN, tokens["LLMTALLY_INGEST_TOKEN"], "secret@db.example")
    assert_no_secret(target, "checkout-ingest-token-0123456789", "alice-api-token-0123456789abcdef")

    # The thresholds: the rules read them at run time; the README says so and shows the ones in effect.
    readme = (target / "README.md").read_text()
    assert "| `spend_daily_high_usd` | 40 |" in readme
    assert "| `error_rate_critical` | 0.3 |" in readme
    assert "| `spend_daily_medium_usd` | 10 |" in readme  # the defaults of the others
    assert f"from {tmp_path / 'mine.yaml'}" in readme
    rules = (target / "prometheus" / "rules" / "llmtally-alerts.rules.yml").read_bytes()
    assert rules == (ROOT / "alert-rules" / "llmtally-alerts.rules.yml").read_bytes()


def test_tls_of_the_receiver_reaches_every_client(tmp_path, capsys, schema, otelcol):
    """receiver.tls with client_ca_file: the receiver's files mounted from tls/, the collector and Prometheus
    speaking TLS with a client certificate, the health check too; checked with real certificates put in tls/."""
    config = tmp_path / "tls.yaml"
    config.write_text(
        "receiver:\n  tls:\n    cert_file: /somewhere/server.crt\n    key_file: /somewhere/server.key\n"
        "    client_ca_file: /somewhere/clients.crt\n"
    )
    target = tmp_path / "stack"
    code, out, err = bundle(capsys, str(target), "--config", str(config))
    assert code == 0, err
    tls = target / "tls"
    assert "client.crt" in (tls / "README.md").read_text()
    ca = Authority(tls)
    ca.issue("server", server=True)
    ca.issue("client", server=False)
    (tls / "client-ca.crt").write_bytes(ca.pair.cert.read_bytes())
    compose = check_bundle(target, schema, otelcol, printed_tokens(out), replace={"/etc/llmtally/tls": str(tls)})
    services = compose["services"]
    for name in ("collector", "llmtally", "prometheus", "grafana"):
        assert "./tls:/etc/llmtally/tls:ro" in services[name]["volumes"], name
    assert (
        services["collector"]["environment"].items()
        >= {
            "LLMTALLY_TLS_INSECURE": "false",
            "LLMTALLY_TLS_CA_FILE": "/etc/llmtally/tls/ca.crt",
            "LLMTALLY_TLS_CERT_FILE": "/etc/llmtally/tls/client.crt",
            "LLMTALLY_TLS_KEY_FILE": "/etc/llmtally/tls/client.key",
        }.items()
    )
    assert "https://llmtally:4318/readyz" in services["llmtally"]["healthcheck"]["test"][-1]
    job = yaml.safe_load((target / "prometheus" / "prometheus.yml").read_text())["scrape_configs"][0]
    assert job["scheme"] == "https"
    assert job["tls_config"] == {
        "ca_file": "/etc/llmtally/tls/ca.crt",
        "server_name": "llmtally",
        "cert_file": "/etc/llmtally/tls/client.crt",
        "key_file": "/etc/llmtally/tls/client.key",
    }
    served = serve_config(target)
    assert (served.tls_cert_file, served.tls_key_file, served.tls_client_ca_file) == (
        "/etc/llmtally/tls/server.crt",
        "/etc/llmtally/tls/server.key",
        "/etc/llmtally/tls/client-ca.crt",
    )


def test_it_refuses_to_overwrite_without_force(tmp_path, capsys):
    target = tmp_path / "stack"
    assert bundle(capsys, str(target))[0] == 0
    compose = target / "compose.yaml"
    compose.write_text(compose.read_text() + "# edited\n")
    (target / "mine.txt").write_text("kept")
    code, out, err = bundle(capsys, str(target))
    assert code == 1 and out == ""
    assert "--force" in err and "compose.yaml" in err
    assert compose.read_text().endswith("# edited\n")
    code, out, err = bundle(capsys, str(target), "--force")
    assert code == 0, err
    assert "overwritten" in out
    assert not compose.read_text().endswith("# edited\n")
    assert (target / "mine.txt").read_text() == "kept"


def test_write_tokens_keeps_them_in_a_private_env_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLMTALLY_INGEST_TOKEN", "collector-ingest-token-0123456789")
    target = tmp_path / "stack"
    code, out, err = bundle(capsys, str(target), "--write-tokens")
    assert code == 0, err
    env = target / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    values = dict(re.findall(r"^(LLMTALLY_\w+)=(\S+)$", env.read_text(), re.MULTILINE))
    assert values["LLMTALLY_INGEST_TOKEN"] == "collector-ingest-token-0123456789"
    assert not printed_tokens(out)  # in .env, not on the terminal
    config = serve_config(target)
    assert authenticate(f"Bearer {values['LLMTALLY_API_TOKEN']}", parse_tokens(config.api_tokens)) is not None
    assert Senders.parse(config.ingest_tokens).sender(f"Bearer {values['LLMTALLY_INGEST_TOKEN']}").name == "collector"
    # Written again: the tokens of .env are kept (compose reads them), and .env is left as it is.
    before = env.read_text()
    code, out, err = bundle(capsys, str(target), "--force")
    assert code == 0, err
    assert not printed_tokens(out) and env.read_text() == before
    config = serve_config(target)
    assert authenticate(f"Bearer {values['LLMTALLY_API_TOKEN']}", parse_tokens(config.api_tokens)) is not None
    env.unlink()
    assert_no_secret(target, *values.values())


def test_a_named_entry_of_llmtally_yaml_is_the_stack_token(tmp_path, capsys):
    """Entries named grafana (api.tokens) and collector (ingest_tokens), given by their sha256: nothing generated,
    the command says which variables to set."""
    config = tmp_path / "llmtally.yaml"  # found in the working directory, as serve finds it
    config.write_text(
        "receiver:\n  ingest_tokens:\n    - name: collector\n      token_sha256: " + digest("c" * 32) + "\n"
        "api:\n  tokens:\n    - name: grafana\n      role: admin\n      token_sha256: " + digest("g" * 32) + "\n"
    )
    code, out, err = bundle(capsys, "stack")
    assert code == 0, err
    assert not printed_tokens(out)
    assert "set LLMTALLY_API_TOKEN to the token of api.tokens entry 'grafana'" in out
    raw = yaml.safe_load((tmp_path / "stack" / "llmtally" / "llmtally.yaml").read_text())
    assert len(raw["api"]["tokens"]) == 1 and len(raw["receiver"]["ingest_tokens"]) == 1


@pytest.mark.parametrize(
    ("config", "env", "message"),
    [
        ("receiver:\n  colour: blue\n", {}, "unknown key receiver.colour"),
        ("api:\n  tokens:\n    - name: x\n      role: admin\n      token: short\n", {}, "at least 16"),
        ("receiver:\n  tls:\n    client_ca_file: /ca.crt\n", {}, "cert_file and key_file"),
        ("", {"LLMTALLY_API_TOKEN": "short"}, "at least 16"),
    ],
)
def test_a_bad_configuration_writes_nothing(tmp_path, capsys, monkeypatch, config, env, message):
    (tmp_path / "bad.yaml").write_text(config)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = bundle(capsys, str(tmp_path / "stack"), "--config", str(tmp_path / "bad.yaml"))
    assert code == 2 and message in err, err
    assert not (tmp_path / "stack").exists()


def test_dir_must_be_a_directory(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code, _, err = bundle(capsys, str(tmp_path / "file"))
    assert code == 1 and "not a directory" in err


def test_the_compose_file_checks_catch_a_broken_bundle(tmp_path, capsys, schema):
    """The checks fail on a mount whose source is missing and on a schema violation."""
    target = tmp_path / "stack"
    assert bundle(capsys, str(target))[0] == 0
    (target / "alertmanager" / "alertmanager.yml").unlink()
    (target / "alertmanager").rmdir()
    with pytest.raises(AssertionError, match=r"mount source \./alertmanager"):
        check_compose(target, schema)
    (target / "alertmanager").mkdir()
    compose = compose_file(target)
    compose["services"]["grafana"]["colour"] = "blue"
    (target / "compose.yaml").write_text(json.dumps(compose))
    with pytest.raises(AssertionError, match="colour"):
        check_compose(target, schema)
