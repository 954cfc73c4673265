"""Configuration reload in a running `llmtally serve` (SQLite and PostgreSQL): a changed llmtally.yaml (file watch)
or SIGHUP puts new budgets and alert thresholds in force without a restart, a bad file is refused with a clear log
line and the old configuration kept, and every reload is in the operations log. Also the registration hook."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from llmtally.exporter import reload
from llmtally.exporter.config import Config, ConfigError
from llmtally.exporter.store import open_store
from receiver import Receiver, metric_sum


def budget(name: str, amount: float) -> dict[str, Any]:
    return {"name": name, "period": "monthly", "amount_usd": amount}


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


class Served:
    def __init__(self, tmp_path: Path, store_url: str, poll_seconds: float) -> None:
        self.receiver = Receiver(
            tmp_path,
            store_url,
            budgets=[budget("team-a", 100)],
            alerts={"thresholds": {"error_rate_high": 0.1}},
            reload={"poll_seconds": poll_seconds},
        )
        self.path = tmp_path / f"llmtally-{self.receiver.http_port}.yaml"

    def budgets(self) -> dict[str, float]:
        answer = self.receiver.get("/api/v1/budgets").json()
        return {b["name"]: b["limit_usd"] for b in answer["budgets"]}

    def threshold(self) -> float:
        return metric_sum(self.receiver.metrics(), "completion_alert_threshold", alert="error_rate_high")

    def rewrite(self, **changes: Any) -> None:
        config = yaml.safe_load(self.path.read_text())
        config.update(changes)
        self.path.write_text(yaml.safe_dump(config))

    def operations(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.receiver.http_url}/api/v1/operations", params={"kind": "reload"}, timeout=10)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["operations"])


def test_file_watch_reloads_and_a_bad_file_is_refused(tmp_path: Path, store_url: str):
    served = Served(tmp_path, store_url, poll_seconds=0.2)
    served.receiver.start()
    try:
        assert served.budgets() == {"team-a": 100} and served.threshold() == 0.1
        served.rewrite(
            budgets=[budget("team-a", 250), budget("team-b", 40)], alerts={"thresholds": {"error_rate_high": 0.2}}
        )
        wait_until(lambda: served.budgets() == {"team-a": 250, "team-b": 40}, "the new budgets")
        assert served.threshold() == 0.2

        served.rewrite(budgets=[budget("team-a", -5)])  # refused: a negative amount
        wait_until(lambda: "refused" in served.receiver.log.read_text(), "the refusal in the log")
        line = next(x for x in served.receiver.log.read_text().splitlines() if "refused" in x)
        assert "budgets[0] (team-a).amount_usd" in line and "previous configuration stays in force" in line
        assert served.budgets() == {"team-a": 250, "team-b": 40} and served.threshold() == 0.2

        served.path.write_text("budgets: [unclosed\n")  # not YAML at all
        wait_until(lambda: len(served.operations()) == 3, "three reloads logged")
        assert served.budgets() == {"team-a": 250, "team-b": 40}
        newest, bad, good = served.operations()
        assert (good["outcome"], good["actor"], good["arguments"]["trigger"]) == ("done", "serve", "file changed")
        assert good["counts"] == {"budgets": 2, "credits": 0, "reports": 0, "dimensions": 0}
        assert bad["outcome"] == "failed" and "amount_usd" in bad["message"]
        assert newest["outcome"] == "failed" and "not valid YAML" in newest["message"]
    finally:
        assert served.receiver.stop() == 0
    assert "Traceback" not in served.receiver.log.read_text()


def test_health_bounds_time_zone_and_scheduled_reports_follow_a_reload(tmp_path: Path, store_url: str):
    """`health:`, `timezone:` and `reports:` are put in force by a reload too; a bad report is refused whole."""
    served = Served(tmp_path, store_url, poll_seconds=0.2)
    served.receiver.start()
    try:

        def bounds() -> Any:
            return served.receiver.get("/api/v1/health").json()["thresholds"]

        def zone() -> Any:
            return served.receiver.get("/api/v1/usage", params={"group_by": "week"}).json()["timezone"]

        before = bounds()
        assert zone() == "UTC"
        report = {"name": "weekly", "schedule": "weekly", "day": "monday", "at": "06:00"}
        report["deliver"] = {"directory": str(tmp_path / "statements")}
        served.rewrite(health={"critical_errors": 40}, timezone="Europe/Paris", reports=[report])
        wait_until(lambda: zone() == "Europe/Paris", "the new time zone")
        assert bounds() != before and 40 in bounds().values()
        wait_until(lambda: any((tmp_path / "statements").glob("weekly-*.html")), "the new report delivered", 30)
        (applied,) = served.operations()
        assert applied["outcome"] == "done" and applied["counts"]["reports"] == 1

        served.rewrite(reports=[{**report, "schedule": "hourly"}])  # refused: no such schedule
        wait_until(lambda: len(served.operations()) == 2, "the refusal logged")
        assert "reports" in served.operations()[0]["message"] and zone() == "Europe/Paris"
    finally:
        assert served.receiver.stop() == 0
    assert "Traceback" not in served.receiver.log.read_text()


def audit_event_json(n: int, team: str) -> bytes:
    """One audit event as OTLP/JSON, tagged with the custom dimension `team`."""
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 20,
        "llmtally.duration": 0.5,
        "llmtally.dim.team": team,
    }
    values = [
        {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": str(v)}}
        if not isinstance(v, float)
        else {"key": k, "value": {"doubleValue": v}}
        for k, v in attributes.items()
    ]
    event = {
        "timeUnixNano": str(time.time_ns()),
        "eventName": "llmtally.completion",
        "traceId": f"{n:032x}",
        "spanId": f"{n:016x}",
        "attributes": values,
    }
    return json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [event]}]}]}).encode()


def test_dimensions_follow_a_reload(tmp_path: Path, store_url: str):
    """A dimension declared by a reload is kept from then on and is a filter and a group at once; one removed is
    refused as a filter, never silently ignored."""
    served = Served(tmp_path, store_url, poll_seconds=0.2)
    served.receiver.start()
    logs = f"{served.receiver.http_url}/v1/logs"
    json_body = {"content-type": "application/json"}
    try:
        assert httpx.post(logs, content=audit_event_json(1, "search"), headers=json_body).status_code == 200
        assert served.receiver.get("/api/v1/usage", params={"group_by": "team"}).status_code == 400
        served.rewrite(dimensions=["team"])
        wait_until(
            lambda: served.receiver.get("/api/v1/usage", params={"group_by": "team"}).status_code == 200,
            "team declared",
        )
        assert httpx.post(logs, content=audit_event_json(2, "search"), headers=json_body).status_code == 200
        wait_until(
            lambda: served.receiver.get("/api/v1/usage", params={"team": "search"}).json()["totals"]["requests"] == 1,
            "the second event kept with its team (the first was stored before team was declared)",
        )
        rows = served.receiver.get("/api/v1/usage", params={"group_by": "team"}).json()["rows"]
        assert {row["team"]: row["requests"] for row in rows} == {"": 1, "search": 1}
        exported = served.receiver.get("/api/v1/export", params={"format": "json", "team": "search"}).json()
        assert [item["team"] for item in exported] == ["search"]
        served.rewrite(dimensions=[])
        wait_until(
            lambda: served.receiver.get("/api/v1/usage", params={"team": "search"}).status_code == 400,
            "team no longer a filter",
        )
        assert served.operations()[0]["counts"]["dimensions"] == 0
    finally:
        assert served.receiver.stop() == 0
    assert "Traceback" not in served.receiver.log.read_text()


def test_sighup_reloads_when_the_watch_is_off(tmp_path: Path, store_url: str):
    served = Served(tmp_path, store_url, poll_seconds=0)
    served.receiver.start()
    try:
        served.rewrite(budgets=[budget("team-c", 7)])
        time.sleep(1.5)
        assert served.budgets() == {"team-a": 100}  # no watch: not yet
        assert served.receiver.process is not None
        served.receiver.process.send_signal(signal.SIGHUP)
        wait_until(lambda: served.budgets() == {"team-c": 7}, "the budgets after SIGHUP")
        (entry,) = served.operations()
        assert entry["arguments"]["trigger"] == "SIGHUP" and entry["outcome"] == "done"
    finally:
        assert served.receiver.stop() == 0
    with open_store(store_url) as store:  # the same log, read from the store
        assert [op.kind for op in store.operations()] == ["reload"]


def test_a_registered_part_that_refuses_stops_the_whole_reload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(reload, "_PARTS", [])
    applied: list[str] = []

    def first(config: Config) -> reload.Apply:
        return lambda: applied.append(f"first {config.retention_days}") or {"first": 1}

    def second(config: Config) -> reload.Apply:
        if config.retention_days == 13:
            raise ConfigError("retention.days: 13 is unlucky")
        return lambda: applied.append("second") or None

    reload.on_reload("first", first)
    reload.on_reload("second", second)
    path = tmp_path / "llmtally.yaml"
    path.write_text("retention:\n  days: 13\n")
    assert reload.reload(str(path), None, "test") is False and applied == []
    path.write_text("retention:\n  days: 14\n")
    assert reload.reload(str(path), None, "test") is True and applied == ["first 14", "second"]
    assert reload.registered() == ("first", "second")
