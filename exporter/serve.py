"""`llmtally serve`: wires receive -> normalise -> price -> store / metrics and runs until SIGINT or SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import uvicorn

from .api.auth import parse_tokens
from .api.feed import Feed, StreamSettings
from .api.routes import create_router, install
from .api.settings import Analytics
from .budgets.config import BudgetSettings
from .budgets.live import LiveBudgets
from .config import Config, ConfigError, is_loopback, split_address
from .dimensions import Dimensions
from .maintenance.retention import Scheduler
from .metrics import Metrics
from .pipeline import Pipeline
from .price import Pricer, PricingConfig
from .readiness import Readiness
from .receive.credentials import Senders
from .receive.grpc_server import start_grpc
from .receive.http_app import create_app
from .receive.ingest import Ingest
from .receive.limits import return_freed_bodies
from .receive.prepare import quiet_gc
from .receive.tls import TLS
from .receive.workers import Workers
from .reload import Apply, Watcher, on_reload
from .reports.config import from_config as scheduled_reports
from .reports.route import add_route as statement_route
from .reports.scheduler import ReportScheduler
from .store import open_store


def redact(url: str) -> str:
    """A store URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def serve(config: Config) -> int:
    """Runs the receiver; returns once it has stopped cleanly (every acknowledged batch stored)."""
    pricer = Pricer(PricingConfig.from_dict(config.pricing))
    budgets = BudgetSettings.from_config(config)
    dimensions = Dimensions.from_config(config)
    scheduled = scheduled_reports(config)
    analytics = Analytics.from_config(config)
    tokens = parse_tokens(config.api_tokens)
    host, port = split_address(config.http, "http")
    if not tokens and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve the analytics API on {host} without API tokens: anyone who can reach it would read "
            "every request. Configure api.tokens in llmtally.yaml, or listen on 127.0.0.1"
        )
    senders = Senders.parse(config.ingest_tokens)
    senders.check_listeners({"receiver.otlp_grpc": config.otlp_grpc, "receiver.http": config.http})
    tls = TLS.from_config(config)
    exposed = not all(is_loopback(split_address(a)[0]) for a in (config.otlp_grpc, config.http))
    if exposed and tls is None:
        print(
            "llmtally serve: warning: listening off loopback without TLS: tokens and records cross the network in "
            "plain text (set receiver.tls, or keep the network private)",
            file=sys.stderr,
            flush=True,
        )
    store = open_store(config.store)
    metrics = Metrics(config.max_series, [(d.key, d.max_values) for d in dimensions.labels])
    live_budgets = LiveBudgets(store, budgets)  # follows configuration reloads
    metrics.registry.register(live_budgets.metrics)
    pipeline = Pipeline(store, metrics, max_queued=config.queue_records).start()
    metrics.receiver.watch(pipeline.depth, pricer.catalog_age_seconds)
    count = (os.cpu_count() or 1) if config.workers is None else config.workers
    workers = Workers(count, config.pricing) if count else None
    if workers is not None:
        workers.warm_up()
    ingest = Ingest(pipeline, pricer, metrics, config.ack_timeout_seconds, workers, dimensions)
    grpc_server, grpc_port = start_grpc(
        ingest,
        config.otlp_grpc,
        retry_after=config.retry_after_seconds,
        max_concurrent=config.max_concurrent_grpc_requests,
        max_message_bytes=config.max_request_bytes,
        senders=senders,
        credentials=tls.grpc_credentials() if tls else None,
    )
    readiness = Readiness(pipeline, store, queue_records=config.queue_records, hold_seconds=config.retry_after_seconds)
    app = create_app(
        ingest,
        metrics,
        ready=readiness.check,
        max_request_bytes=config.max_request_bytes,
        retry_after=config.retry_after_seconds,
        senders=senders,
        max_concurrent=config.max_concurrent_http_requests,
    )
    feed = Feed(store, StreamSettings.from_config(config))  # the live feed, /api/v1/requests/stream
    live_analytics = [analytics]  # timezone: and health: in force (they follow reloads)
    more = [statement_route(store, pricer)]
    router = create_router(
        store,
        tokens,
        pricer,
        live_budgets,
        analytics=lambda: live_analytics[0],
        dimensions=lambda: ingest.dimensions.keys,
        more=more,
        feed=feed,
    )
    install(app, router, config.retry_after_seconds)
    retention = Scheduler(
        store, config.retention_days, config.retention_payload_days, config.retention_interval_seconds
    ).start()
    reports = ReportScheduler(store, pricer, scheduled, zone=analytics.timezone).start()

    def prepare_analytics(new: Config) -> Apply:
        """timezone:, health:, reports: and dimensions: in force after a reload (a dimension's metric label, which
        Prometheus families fix when they are made, at the next start: logged)."""
        settings, scheduled, declared = Analytics.from_config(new), scheduled_reports(new), Dimensions.from_config(new)
        if declared.labels != dimensions.labels:
            print("llmtally serve: dimensions: metric labels take effect at the next start", file=sys.stderr)

        def apply() -> Mapping[str, int]:
            live_analytics[0] = settings
            reports.apply(scheduled, settings.timezone)
            ingest.dimensions = declared  # kept from the next batch on; filters and group_by take them at once
            return {"reports": len(scheduled), "dimensions": len(declared.keys)}

        return apply

    on_reload("timezone, health bounds, scheduled reports and dimensions", prepare_analytics)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            **(tls.uvicorn_options() if tls else {}),
        )
    )
    feed.stop_when(lambda: server.should_exit)  # open streams end when shutdown starts
    grpc_host = split_address(config.otlp_grpc)[0]
    print(
        f"llmtally serve: OTLP/gRPC {grpc_host}:{grpc_port}, HTTP {host}:{port} "
        f"(/v1/logs /v1/traces /v1/metrics /metrics /healthz /readyz /api/v1, "
        f"API tokens {'required' if tokens else 'off: loopback only'}; "
        f"ingest tokens {'required' if senders.required else 'off: loopback only'}; "
        f"{tls.describe() if tls else 'no TLS'}), store {redact(config.store)}, "
        f"{count} worker process{'' if count == 1 else 'es'}",
        file=sys.stderr,
        flush=True,
    )
    # uvicorn handles SIGINT/SIGTERM while it runs, then re-raises the signal: these handlers receive it, so the
    # process goes on to drain the queue and close the store instead of dying with the signal.
    for handled in (signal.SIGINT, signal.SIGTERM):
        signal.signal(handled, lambda *_: None)
    quiet_gc()
    return_freed_bodies()
    watcher = Watcher(config.path, store, config.reload_poll_seconds).start()
    try:
        server.run()
    finally:
        watcher.close()
        grpc_server.stop(grace=5).wait()
        if workers is not None:
            workers.close()
        retention.close()
        reports.close()
        pipeline.close()
        store.close()
        print("llmtally serve: stopped; every acknowledged batch is stored", file=sys.stderr, flush=True)
    return 0
