"""`llmtally serve`: wires receive -> normalise -> price -> store / metrics and runs until SIGINT or SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
from urllib.parse import urlsplit, urlunsplit

import uvicorn

from .api.auth import parse_tokens
from .api.feed import Feed, StreamSettings
from .api.routes import create_router, install
from .budgets.config import BudgetSettings
from .budgets.live import LiveBudgets
from .config import Config, ConfigError, is_loopback, split_address
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
from .reload import Watcher
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
    metrics = Metrics(config.max_series)
    live_budgets = LiveBudgets(store, budgets)  # follows configuration reloads
    metrics.registry.register(live_budgets.metrics)
    pipeline = Pipeline(store, metrics, max_queued=config.queue_records).start()
    metrics.receiver.watch(pipeline.depth, pricer.catalog_age_seconds)
    count = (os.cpu_count() or 1) if config.workers is None else config.workers
    workers = Workers(count, config.pricing) if count else None
    if workers is not None:
        workers.warm_up()
    ingest = Ingest(pipeline, pricer, metrics, config.ack_timeout_seconds, workers)
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
    install(app, create_router(store, tokens, pricer, live_budgets, feed), config.retry_after_seconds)
    retention = Scheduler(
        store, config.retention_days, config.retention_payload_days, config.retention_interval_seconds
    ).start()
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
        pipeline.close()
        store.close()
        print("llmtally serve: stopped; every acknowledged batch is stored", file=sys.stderr, flush=True)
    return 0
