"""Real Prometheus, Alertmanager and a webhook receiver for the end-to-end alerting test.

Each runs on 127.0.0.1 at a free port with its files in the test's directory and is stopped by PID. The shipped
rule files and alertmanager.yml are not used directly: `copy_rules` rewrites every `for:` to a short duration and
`copy_alertmanager_config` points every webhook at the test's receiver and shortens the grouping waits, so the
alerts arrive within seconds. A missing binary fails (never skips) the test with the way to install it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx
import pytest
import yaml

from receiver import free_port

PROMETHEUS = Path("/usr/bin/prometheus")
ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")
INSTALL_HINT = "bash scripts/test.sh installs them (Debian packages prometheus and prometheus-alertmanager)"
T = TypeVar("T")


def require_binary(path: Path) -> str:
    """`path` as a string; fails the test when it is not an executable."""
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{path} not found: {INSTALL_HINT}")
    return str(path)


def wait_for(check: Callable[[], T | None], timeout: float, what: Callable[[], str] | str) -> T:
    """Polls `check` until it returns something truthy; fails with `what` (a text or a function making one)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what() if callable(what) else what}")
        time.sleep(0.25)


# --- the rule files and the Alertmanager config, rewritten for speed -----------------------------------------------


def copy_rules(source: Path, target: Path, hold: Callable[[dict[str, Any]], str]) -> list[Path]:
    """Copies `source/*.rules.yml` into `target` with every alert's `for:` set to `hold(rule)` (e.g. "0s")."""
    files = sorted(source.glob("*.rules.yml"))
    assert files, f"no *.rules.yml in {source}"
    target.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in files:
        document = yaml.safe_load(path.read_text())
        for group in document.get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule:
                    rule["for"] = hold(rule)
        copy = target / path.name
        copy.write_text(yaml.safe_dump(document, sort_keys=False, width=1000))
        copies.append(copy)
    return copies


def copy_alertmanager_config(source: Path, target: Path, webhook_url: str, wait: str = "1s") -> dict[str, Any]:
    """Writes `source` to `target` with every webhook url replaced by `webhook_url` and every route's group_wait and
    group_interval set to `wait`; returns the rewritten config."""
    assert source.is_file(), f"{source} not found"
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    for receiver in config.get("receivers", []):
        for webhook in receiver.get("webhook_configs", []):
            webhook.pop("url_file", None)
            webhook["url"] = webhook_url
            webhook["send_resolved"] = webhook.get("send_resolved", True)

    def shorten(route: dict[str, Any], top: bool) -> None:
        for key in ("group_wait", "group_interval"):
            if top or key in route:
                route[key] = wait
        for child in route.get("routes", []):
            shorten(child, False)

    shorten(config["route"], True)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return config


# --- processes -----------------------------------------------------------------------------------------------------


class Server:
    """A subprocess serving HTTP on 127.0.0.1:port, ready when `ready_path` answers 200; stopped by PID."""

    ready_path = "/-/ready"

    def __init__(self, workdir: Path, name: str) -> None:
        self.workdir = workdir
        self.name = name
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The subprocess's environment (None: this one's)."""
        return None

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + self.ready_path, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout: float = 30.0) -> Self:
        command = self.command()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=self.environment(), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.process.returncode}: {self.tail()}")
            if self.ready():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready after {timeout}s: {self.tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM by PID, SIGKILL past the timeout; the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def tail(self, size: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""

    def get(self, path: str, **params: Any) -> Any:
        answer = httpx.get(self.url + path, params=params, timeout=5)
        answer.raise_for_status()
        return answer.json()


class Prometheus(Server):
    """Scrapes `targets` (job `llmtally`) and evaluates `rule_files` every second, alerting `alertmanager`."""

    def __init__(self, workdir: Path, targets: list[str], rule_files: list[Path], alertmanager: str) -> None:
        super().__init__(workdir, "prometheus")
        self.config = workdir / "prometheus.yml"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
            "scrape_configs": [{"job_name": "llmtally", "static_configs": [{"targets": targets}]}],
        }
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))

    def command(self) -> list[str]:
        return [
            require_binary(PROMETHEUS),
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of `expr` now: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def rule_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self.get("/api/v1/rules")["data"]["groups"]
        return groups

    def firing(self) -> list[dict[str, Any]]:
        """The alerts in state firing."""
        return [a for a in self.get("/api/v1/alerts")["data"]["alerts"] if a["state"] == "firing"]

    def target_health(self) -> list[str]:
        return [t["health"] for t in self.get("/api/v1/targets")["data"]["activeTargets"]]


class Alertmanager(Server):
    """Alertmanager with `config` (clustering off)."""

    def __init__(self, workdir: Path, config: Path) -> None:
        super().__init__(workdir, "alertmanager")
        self.config = config

    def command(self) -> list[str]:
        storage = self.workdir / "alertmanager-data"
        storage.mkdir(exist_ok=True)
        return [
            require_binary(ALERTMANAGER),
            f"--config.file={self.config}",
            f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert it holds (active, silenced and inhibited) from /api/v2/alerts."""
        found: list[dict[str, Any]] = self.get("/api/v2/alerts")
        return found


# --- the webhook receiver ------------------------------------------------------------------------------------------


class Webhook:
    """A threaded HTTP server on 127.0.0.1 keeping every JSON body posted to it."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        lock = self.lock = threading.Lock()
        notifications = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    notifications.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def start(self) -> Webhook:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def alerts(self, status: str = "firing") -> list[dict[str, Any]]:
        """Every alert of every notification received so far with `status` (in arrival order)."""
        with self.lock:
            return [a for n in self.notifications for a in n.get("alerts", []) if a.get("status") == status]

    def receivers(self, alertname: str, **labels: str) -> set[str]:
        """The Alertmanager receivers that notified alert `alertname` (with `labels`, when given)."""
        wanted = {"alertname": alertname, **labels}
        with self.lock:
            return {
                n["receiver"]
                for n in self.notifications
                if any(wanted.items() <= a["labels"].items() for a in n.get("alerts", []))
            }

    def alertnames(self) -> set[str]:
        return {a["labels"].get("alertname", "") for a in self.alerts()}


def stack_logs(*servers: Server) -> str:
    """The tail of each server's log, for failure messages."""
    return "\n".join(f"--- {s.name}:\n{s.tail(2000)}" for s in servers)
