"""`llmtally.yaml`: the documented example is valid, every key is read, and bad values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmtally.exporter.config import Config, ConfigError, load
from llmtally.exporter.price import PricingConfig

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
