"""A real `llmtally serve` subprocess for tests: its own config file, free loopback ports, stopped by PID."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from pg_server import free_port


class Receiver:
    """`llmtally serve` with `store` and extra llmtally.yaml settings; with `https` (the client's TLS context: the CA
    to trust, a client certificate for mTLS) its HTTP port is reached over TLS."""

    def __init__(self, workdir: Path, store: str, *, https: ssl.SSLContext | None = None, **settings: Any) -> None:
        self.workdir = workdir
        self.store = store
        self.https = https
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"serve-{self.http_port}.log"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.http_port}"

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET `path` on the HTTP port (over TLS when the receiver has it)."""
        return httpx.get(f"{self.http_url}{path}", verify=self.https or True, **{"timeout": 10, **kwargs})

    def start(self, timeout: float = 30.0) -> Receiver:
        config = {
            "store": self.store,
            "receiver": {
                "otlp_grpc": f"127.0.0.1:{self.grpc_port}",
                "http": f"127.0.0.1:{self.http_port}",
                **self.settings.get("receiver", {}),
            },
            **{k: v for k, v in self.settings.items() if k != "receiver"},
        }
        path = self.workdir / f"llmtally-{self.http_port}.yaml"
        path.write_text(yaml.safe_dump(config))
        command = [str(Path(sys.executable).with_name("llmtally")), "serve", "--config", str(path)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMTALLY_", "OTEL_"))}
        self.process = subprocess.Popen(
            command, cwd=self.workdir, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llmtally serve exited {self.process.returncode}: {self.log.read_text()}")
            try:
                if self.get("/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"llmtally serve not ready after {timeout}s: {self.log.read_text()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait: returns the exit code (0 when it stopped cleanly)."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def metrics(self) -> str:
        return self.get("/metrics").text


def metric_sum(exposition: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
