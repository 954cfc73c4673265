"""The shipped collector pipelines for real: the collector built from collector/ runs otel-collector-config.yaml
(apps -> collector -> one `llmtally serve`) and otel-collector-loadbalancing.yaml (routed by trace id to two
replicas on one PostgreSQL, one of them killed with SIGKILL and restarted in the middle of the run).

What the app sent is known twice over: the fake provider records every LLM call it answered, and the collector also
fans the app's spans out to an in-process OTLP sink, whose llmtally span ids are the record ids the store must hold.

The receivers require an ingest token and speak TLS (a throwaway CA): the collector sends the token and trusts the CA
through the environment variables the shipped files read.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

import alerting_stack
from alerting_stack import Server, wait_for
from collector import ROOT, Collector, build_collector, validate, write_config
from instrumented_app import APP_CALLS, run_instrumented_app
from llmtally.exporter.store import open_store
from otlp_sink import OTLPSink
from pg_server import PostgresServer
from receiver import Receiver, metric_sum
from tls_certs import Authority, Pair

SINGLE = ROOT / "otel-collector-config.yaml"
BALANCED = ROOT / "otel-collector-loadbalancing.yaml"
EVERYTHING = (0, 2**63 - 1)
DEADLINE = 30.0
INGEST_TOKEN = "collector-ingest-token-0123456789"


@pytest.fixture(scope="module")
def otelcol() -> Path:
    return build_collector()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Pair]:
    """A CA and the receivers' certificate (for 127.0.0.1)."""
    ca = Authority(tmp_path_factory.mktemp("pki"))
    return ca, ca.issue("receiver", server=True)


def secured(workdir: Path, store: str, pki: tuple[Authority, Pair]) -> Receiver:
    """A receiver that takes OTLP only with INGEST_TOKEN, over TLS."""
    ca, server = pki
    settings = {
        "tls": {"cert_file": str(server.cert), "key_file": str(server.key)},
        "ingest_tokens": [{"name": "collector", "token": INGEST_TOKEN}],
    }
    return Receiver(workdir, store, https=ca.client_context(), receiver=settings)


def credentials(pki: tuple[Authority, Pair]) -> dict[str, str]:
    """The collector's environment for the shipped files: the token, and the CA that signed the receivers."""
    return {"LLMTALLY_INGEST_TOKEN": INGEST_TOKEN, "LLMTALLY_TLS_CA_FILE": str(pki[0].pair.cert)}


# --- validate -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [SINGLE, BALANCED], ids=lambda p: p.name)
def test_shipped_config_is_valid(otelcol: Path, config: Path) -> None:
    """As shipped, with the default addresses (validate resolves no host name, so none need exist here)."""
    run = validate(otelcol, config)
    assert run.returncode == 0, run.stderr


def test_validate_refuses_a_broken_config(otelcol: Path, tmp_path: Path) -> None:
    config = yaml.safe_load(SINGLE.read_text())
    config["exporters"]["otlp/llmtally"]["retry_on_failure"]["max_interval"] = "soon"
    config["service"]["pipelines"]["traces"]["exporters"].append("otlp/missing")
    run = validate(otelcol, write_config(tmp_path / "broken.yaml", config))
    assert run.returncode != 0
    assert "otlp/missing" in run.stderr or "max_interval" in run.stderr, run.stderr


# --- helpers ------------------------------------------------------------------------------------------------------


def sink_overlay(path: Path, sink: OTLPSink, exporters: list[str]) -> Path:
    """A config merged after the shipped one: traces and logs also go to `sink` (what the app sent)."""
    otlp_sink = {"endpoint": f"127.0.0.1:{sink.port}", "tls": {"insecure": True}}
    pipelines = {name: {"exporters": [*exporters, "otlp/sink"]} for name in ("traces", "logs")}
    return write_config(path, {"exporters": {"otlp/sink": otlp_sink}, "service": {"pipelines": pipelines}})


def sent_ids(sink: OTLPSink) -> list[str]:
    """The span ids of the llmtally spans the app exported: one per LLM call, the record ids."""
    return [span.span_id.hex() for scope, span in sink.spans() if scope.startswith("llmtally")]


def stored(url: str) -> tuple[list[str], dict[str, Any]]:
    """Every record id in the store and its rollup totals, which must be the sums of the records."""
    with contextlib.closing(open_store(url)) as store:
        records = store.records_between(*EVERYTHING, limit=100_000)
        (totals,) = store.usage([], *EVERYTHING)
    assert totals["requests"] == len(records)
    for name in ("input_tokens", "output_tokens", "total_tokens", "provider_cost_nusd", "customer_cost_nusd"):
        assert totals[name] == sum(getattr(r, name) or 0 for r in records), name
    return [r.record_id for r in records], totals


def count_is(url: str, expected: int) -> bool:
    with contextlib.closing(open_store(url)) as store:
        return store.count() == expected


# --- apps -> collector -> one receiver ----------------------------------------------------------------------------


def test_app_through_the_shipped_collector_config_is_stored_once(
    otelcol: Path, provider: Any, tmp_path: Path, pki: tuple[Authority, Pair]
) -> None:
    url = f"sqlite:///{tmp_path}/audit.db"
    receiver = secured(tmp_path, url, pki)
    with contextlib.ExitStack() as stack, OTLPSink() as sink:
        stack.callback(receiver.stop)
        receiver.start()
        overlay = sink_overlay(tmp_path / "sink.yaml", sink, ["otlp/llmtally"])
        env = {"LLMTALLY_OTLP_ENDPOINT": f"127.0.0.1:{receiver.grpc_port}", **credentials(pki)}
        collector = Collector(otelcol, tmp_path, [SINGLE, overlay], env)
        stack.callback(collector.stop)
        collector.start()
        run_instrumented_app(provider.base_url, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=collector.grpc_endpoint)
        wait_for(lambda: count_is(url, APP_CALLS), DEADLINE, collector.tail)
        assert collector.stop() == 0  # drains its queues: anything late would show below
        exposition = receiver.metrics()
        ids, _ = stored(url)
        sent = sent_ids(sink)
    assert len(provider.requests) == APP_CALLS
    assert len(sent) == APP_CALLS and len(set(sent)) == APP_CALLS
    assert sorted(ids) == sorted(sent)
    assert metric_sum(exposition, "llmtally_receiver_records_stored_total") == APP_CALLS
    assert metric_sum(exposition, "completion_requests_total") == APP_CALLS
    assert metric_sum(exposition, "llmtally_receiver_accepted_total", signal="metric_points") > 0
    assert metric_sum(exposition, "llmtally_receiver_refused_requests_total", reason="unauthenticated") == 0


# --- apps -> collector -> two replicas on one PostgreSQL, one killed and restarted ------------------------------


class Prometheus(alerting_stack.Prometheus):
    """A real Prometheus scraping `targets` every second over TLS trusting `ca` (no rules, no Alertmanager)."""

    def __init__(self, workdir: Path, targets: list[str], ca: Path) -> None:
        Server.__init__(self, workdir, "prometheus")
        self.config = workdir / "prometheus.yml"
        config = {
            "global": {"scrape_interval": "2s", "scrape_timeout": "2s"},
            "scrape_configs": [
                {
                    "job_name": "llmtally",
                    "scheme": "https",
                    "tls_config": {"ca_file": str(ca)},
                    "static_configs": [{"targets": targets}],
                }
            ],
        }
        self.config.write_text(yaml.safe_dump(config))

    def value(self, expr: str) -> float | None:
        """The value of `expr` (one series) now; None while it has none."""
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None


def balanced_config(path: Path, replicas: list[Receiver]) -> Path:
    """The shipped load-balanced config with the static resolver listing `replicas` instead of DNS."""
    config = yaml.safe_load(BALANCED.read_text())
    hostnames = [f"127.0.0.1:{r.grpc_port}" for r in replicas]
    exporters = config["exporters"]
    balancers = [name for name in exporters if name.startswith("loadbalancing/")]
    assert balancers, "no loadbalancing exporter in the shipped config"
    for name in balancers:
        exporters[name]["resolver"] = {"static": {"hostnames": hostnames}}
    assert exporters["loadbalancing/llmtally"]["routing_key"] == "traceID"
    return write_config(path, config)


def requests_on(receiver: Receiver) -> float:
    return metric_sum(receiver.metrics(), "completion_requests_total")


def kill(receiver: Receiver) -> None:
    """SIGKILL by PID: nothing is flushed, in-memory counters are gone."""
    assert receiver.process is not None
    os.kill(receiver.process.pid, signal.SIGKILL)
    receiver.process.wait()
    receiver.process = None


def in_flight(replicas: list[Receiver]) -> Receiver | None:
    """A replica holding records it has not stored yet."""
    return next((r for r in replicas if metric_sum(r.metrics(), "llmtally_receiver_queue_depth") > 0), None)


def test_two_replicas_lose_nothing_when_one_is_killed_mid_run(
    otelcol: Path, provider: Any, tmp_path: Path, pg_server: PostgresServer, pki: tuple[Authority, Pair]
) -> None:
    dsn = pg_server.create_database()
    replicas = [secured(tmp_path, dsn, pki), secured(tmp_path, dsn, pki)]
    runs = 4
    expected = runs * APP_CALLS
    both = "sum(completion_requests_total)"
    with contextlib.ExitStack() as stack, OTLPSink() as sink:
        stack.callback(pg_server.drop_database, dsn)
        for replica in replicas:
            stack.callback(replica.stop)
            replica.start()
        prometheus = Prometheus(tmp_path, [f"127.0.0.1:{r.http_port}" for r in replicas], pki[0].pair.cert)
        stack.callback(prometheus.stop)
        prometheus.start()
        config = balanced_config(tmp_path / "balanced.yaml", replicas)
        overlay = sink_overlay(tmp_path / "sink.yaml", sink, ["loadbalancing/llmtally"])
        collector = Collector(otelcol, tmp_path, [config, overlay], credentials(pki))
        stack.callback(collector.stop)
        collector.start()

        def app() -> None:
            run_instrumented_app(provider.base_url, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=collector.grpc_endpoint)

        app()  # both replicas up: Prometheus's sum is exact
        wait_for(lambda: count_is(dsn, APP_CALLS), DEADLINE, collector.tail)
        wait_for(lambda: prometheus.value(both) == APP_CALLS, DEADLINE, lambda: f"{both} = {prometheus.value(both)}")

        # Mid-run: a table lock holds every write, so the batches the collector sends for the next run stay
        # unacknowledged (no replica can commit). Once one replica holds some and Prometheus has scraped its final
        # count, SIGKILL it: its open transaction dies with it, and the collector must deliver those batches again.
        with psycopg.connect(dsn) as lock:
            lock.execute("LOCK TABLE completion_records IN SHARE MODE")
            app()
            victim = wait_for(lambda: in_flight(replicas), DEADLINE, "no batch in flight at a replica")
            before_kill = requests_on(victim)
            victim_total = f'sum(completion_requests_total{{instance="127.0.0.1:{victim.http_port}"}})'
            wait_for(lambda: prometheus.value(victim_total) == before_kill, DEADLINE, "the victim not scraped")
            kill(victim)
            lock.rollback()
        victim_up = f'up{{instance="127.0.0.1:{victim.http_port}"}}'
        wait_for(lambda: prometheus.value(victim_up) == 0, DEADLINE, "the kill not seen by Prometheus")
        victim.start()  # same ports: the collector's retries of the victim's batches now succeed
        wait_for(lambda: count_is(dsn, 2 * APP_CALLS), DEADLINE, collector.tail)
        # What it held when killed, stored by it after the restart (its /metrics follow its commits a moment later).
        wait_for(lambda: requests_on(victim) > 0, DEADLINE, "the victim stored nothing after its restart")
        assert "Exporting failed" in collector.tail(1_000_000)  # the collector did retry
        for _ in range(runs - 2):
            app()

        wait_for(lambda: count_is(dsn, expected), DEADLINE, collector.tail)
        # Restart semantics: the restarted victim counts from zero, and Prometheus's last sample of it before the
        # kill is its final count there (it could commit nothing after): the two add up to every request sent.
        wait_for(
            lambda: before_kill + (prometheus.value(both) or 0) == expected,
            DEADLINE,
            lambda: f"{before_kill} before the kill + {both} = {prometheus.value(both)}, not {expected}",
        )
        assert collector.stop() == 0
        live = sum(requests_on(r) for r in replicas)
        ids, _ = stored(dsn)
        sent = sent_ids(sink)
    assert len(provider.requests) == expected
    assert len(sent) == expected and len(set(sent)) == expected
    assert sorted(ids) == sorted(sent)  # every record once: none lost in the outage, none counted twice
    assert before_kill + live == expected
