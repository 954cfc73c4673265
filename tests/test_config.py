"""`llmtally.yaml`: the documented example is valid, every key is read, and bad values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmtally.exporter.config import Config, ConfigError, load
from llmtally.exporter.price import PricingConfig
from llmtally.exporter.reports import config as reports_config

EXAMPLE = Path(__file__).resolve().parent.parent / "llmtally.example.yaml"


def test_the_documented_example_loads_and_matches_the_defaults():
    config = load(str(EXAMPLE), env={})
    defaults = Config()
    for name in (
        "store",
        "otlp_grpc",
        "http",
        "queue_records",
        "ack_timeout_seconds",
        "retry_after_seconds",
        "max_request_bytes",
        "max_series",
    ):
        assert getattr(config, name) == getattr(defaults, name), name
    pricing = PricingConfig.from_dict(config.pricing)
    assert pricing.overrides[0].model == "my-llama-*"
    assert reports_config.from_config(config) == ()


def test_the_commented_reports_example_parses():
    """The `reports:` entry of the example, uncommented, is a valid report with every key read."""
    lines = EXAMPLE.read_text().split("\nreports:", 1)[1].splitlines()[2:]
    text = "\n".join(line.replace("  # ", "  ", 1).split("   #")[0].split("  # ")[0] for line in lines if "#" in line)
    entry = yaml.safe_load("reports:\n" + text)["reports"]
    [report] = reports_config.parse(entry)
    assert (report.name, report.schedule, report.day, report.at, report.period) == (
        "monthly-chargeback",
        "monthly",
        1,
        (6, 0),
        "month",
    )
    assert report.by == ("department",) and report.formats == ("pdf", "csv")
    assert report.targets == ("directory", "webhook", "email")
    assert report.email is not None and report.email.starttls and report.email.port == 587
    assert report.webhook is not None and report.webhook.retries == 3


def test_flags_win_over_the_environment_which_wins_over_the_file(tmp_path):
    path = tmp_path / "llmtally.yaml"
    path.write_text("store: sqlite:///file.db\nreceiver:\n  http: 127.0.0.1:9000\n")
    assert load(str(path), env={}).store == "sqlite:///file.db"
    assert load(str(path), env={"LLMTALLY_STORE": "sqlite:///env.db"}).store == "sqlite:///env.db"
    flagged = load(str(path), env={"LLMTALLY_STORE": "sqlite:///env.db"}, store="sqlite:///flag.db", http="0.0.0.0:1")
    assert (flagged.store, flagged.http) == ("sqlite:///flag.db", "0.0.0.0:1")
    assert load(None, env={"LLMTALLY_CONFIG": str(path)}).http == "127.0.0.1:9000"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("stor: x\n", "stor"),
        ("receiver:\n  htp: 1\n", "receiver.htp"),
        ("receiver:\n  queue_records: many\n", "receiver.queue_records"),
        ("receiver:\n  http: nowhere\n", "http"),
        ("metrics:\n  max_series: -1\n", "metrics.max_series"),
    ],
)
def test_bad_values_name_their_key(tmp_path, text, key):
    path = tmp_path / "llmtally.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load(str(path), env={})


def test_serve_refuses_a_bad_config_with_a_clear_message(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "llmtally.yaml"
    path.write_text("receiver:\n  queue_records: many\n")
    run = subprocess.run(
        [str(Path(sys.executable).with_name("llmtally")), "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "receiver.queue_records must be an integer" in run.stderr


def test_serve_refuses_a_bad_report_before_listening(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "llmtally.yaml"
    path.write_text("reports:\n  - {name: r, schedule: yearly, deliver: {directory: d}}\n")
    run = subprocess.run(
        [str(Path(sys.executable).with_name("llmtally")), "serve", "--config", str(path), "--store", "sqlite:///x.db"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 2
    assert "reports.r.schedule must be monthly, weekly, daily or a cron expression" in run.stderr
