"""The `llmtally` command: `serve`, `demo`, the analytics reports and the jobs over stored records."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

from llmtally.exporter.api.params import GROUPS, LOG_STATUSES, SORTS, USAGE_STATUSES

from .commands.arguments import add_forget_and_operations, add_report, add_tail
from .commands.options import add_filters, add_json, add_range, add_store


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmtally", description="LLM usage, cost and audit analytics on OpenTelemetry"
    )
    parser.add_argument("--version", action="version", version=f"llmtally {metadata.version('llmtally')}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="start a receiver, a fake provider and an instrumented example app, then show the reports"
    )
    demo.add_argument("--store", help="store URL to use (default: a new SQLite file in a temporary directory)")
    demo.add_argument("--keep-running", action="store_true", help="keep the receiver running until Ctrl-C")

    serve = commands.add_parser("serve", help="run the OTLP receiver: price, store and expose every LLM request")
    add_store(serve)
    serve.add_argument("--otlp-grpc", metavar="HOST:PORT", help="OTLP/gRPC listen address (default 127.0.0.1:4317)")
    serve.add_argument("--http", metavar="HOST:PORT", help="HTTP listen address (default 127.0.0.1:4318)")
    serve.add_argument("--tls-cert", metavar="FILE", help="TLS certificate (PEM) for both listeners")
    serve.add_argument("--tls-key", metavar="FILE", help="its private key (PEM)")
    serve.add_argument("--tls-client-ca", metavar="FILE", help="require client certificates signed by this CA (mTLS)")
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes that decode, normalise and price requests (default: one per CPU; 0: none)",
    )

    def report(name: str, help: str, default_range: str, statuses: tuple[str, ...]) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help)
        add_store(command)
        add_range(command, default_range)
        add_filters(command, statuses)
        add_json(command)
        return command

    usage = report("usage", "usage and cost, grouped (--by) and filtered", "7d", USAGE_STATUSES)
    usage.add_argument(
        "--by",
        metavar="GROUPS",
        help=f"comma-separated, among: {', '.join(GROUPS)} (hour, day: UTC; week, month: in llmtally.yaml's timezone), "
        "and the custom dimensions declared in llmtally.yaml",
    )
    requests = report(
        "requests", "the request log, newest first or sorted (or one request's details)", "7d", LOG_STATUSES
    )
    requests.add_argument("id", nargs="?", help="show every stored field of this request")
    requests.add_argument("--limit", type=int, default=20, help="requests per page (default 20)")
    requests.add_argument("--cursor", help="the next page's cursor, as printed under the previous page")
    requests.add_argument(
        "--sort",
        choices=SORTS,
        metavar="ORDER",
        help="time, cost, latency or tokens, ascending; a leading - for descending, written --sort=-cost "
        "(default -time, newest first)",
    )
    report("errors", "errors: total, rate, by type, model and provider", "7d", USAGE_STATUSES)
    report(
        "insights",
        "cost insights: by operation, trend, top drivers, 30-day projection, savings advice priced with genai-prices",
        "30d",
        USAGE_STATUSES,
    )
    report(
        "health",
        "provider and model health: errors, success rate, latency, last used, last error, status (bounds: health: in "
        "llmtally.yaml)",
        "24h",
        USAGE_STATUSES,
    )
    export = report("export", "every matching request as CSV, JSON or JSONL (streamed)", "30d", LOG_STATUSES)
    export.add_argument("--format", choices=("csv", "json", "jsonl"), default="csv")
    export.add_argument("--output", "-o", help="file to write (default: stdout)")
    export.add_argument("--payloads", action="store_true", help="include captured prompts and completions")

    budgets = commands.add_parser("budgets", help="budgets: limit, spent, projection, days left, status; credits")
    add_store(budgets)
    add_json(budgets)

    cleanup = commands.add_parser("cleanup", help="delete records older than N days (or only their payloads)")
    add_store(cleanup)
    cleanup.add_argument("--days", type=int, required=True, help="keep this many whole UTC days (and today)")
    cleanup.add_argument("--dry-run", action="store_true", help="show what would go, change nothing")
    cleanup.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    cleanup.add_argument("--payloads-only", action="store_true", help="drop captured payloads, keep costs and tokens")
    add_json(cleanup)

    reprice = commands.add_parser("reprice", help="recompute the costs of stored records with today's prices")
    add_store(reprice)
    reprice.add_argument("--since", required=True, help="ISO 8601 date or date-time: reprice records from here")
    reprice.add_argument("--until", help="up to here (default now)")
    add_json(reprice)

    price = commands.add_parser("price", help="look a model's price up (overrides first, then genai-prices)")
    price.add_argument("model")
    price.add_argument("--provider", help="provider id, e.g. openai, anthropic")
    price.add_argument("--at", help="ISO 8601 date-time the price applies at (default now)")
    price.add_argument("--config", help="llmtally.yaml with pricing overrides")
    add_json(price)

    add_forget_and_operations(commands)
    add_tail(commands)
    add_report(
        commands.add_parser("report", help="a statement for a period and a grouping: costs, markup, fee, price sources")
    )

    from .commands.bundle import add_arguments

    add_arguments(commands.add_parser("bundle", help="write the Grafana, Prometheus, Alertmanager and collector stack"))
    return parser


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    from .commands import budgets, bundle, operations, records, reports, statements, tail

    return {
        "bundle": bundle.bundle,
        "budgets": budgets.budgets,
        "usage": reports.usage,
        "requests": reports.requests,
        "errors": reports.errors,
        "insights": reports.insights,
        "health": reports.health,
        "export": records.export,
        "cleanup": records.cleanup,
        "reprice": records.reprice,
        "price": records.price,
        "forget": operations.forget,
        "operations": operations.operations,
        "report": statements.report,
        "tail": tail.tail,
    }[name]


# Top-level modules of the `serve` extra (and what they bring): missing in an app's light install.
SERVE_MODULES = frozenset(
    {"yaml", "fastapi", "starlette", "uvicorn", "psycopg", "prometheus_client", "genai_prices", "rich"}
)
SERVE_MODULES |= {"fpdf", "croniter"}  # statements as PDF, cron schedules of reports


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    prefix = f"llmtally {args.command}"
    try:
        return _run(args, prefix)
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in SERVE_MODULES:
            raise
        print(
            f"{prefix}: the receiver and the commands need the `serve` extra ({error.name} is not installed): "
            "pip install 'llmtally[serve]'",
            file=sys.stderr,
        )
        return 1


def _run(args: argparse.Namespace, prefix: str) -> int:
    from llmtally.exporter.config import ConfigError
    from llmtally.exporter.price import PricingConfigError
    from llmtally.exporter.store import StoreError

    try:
        if args.command == "demo":
            from llmtally.demo.console import run_demo

            return run_demo(store=args.store, keep_running=args.keep_running)
        if args.command == "serve":
            from llmtally.exporter.config import load
            from llmtally.exporter.serve import serve

            return serve(
                load(
                    args.config,
                    store=args.store,
                    otlp_grpc=args.otlp_grpc,
                    http=args.http,
                    workers=args.workers,
                    tls_cert_file=args.tls_cert,
                    tls_key_file=args.tls_key,
                    tls_client_ca_file=args.tls_client_ca,
                )
            )
        return _command(args.command)(args)
    except (ConfigError, PricingConfigError, ValueError) as error:  # ValueError: bad parameters (QueryError, ...)
        print(f"{prefix}: {error}", file=sys.stderr)
        return 2
    except (StoreError, OSError) as error:
        print(f"{prefix}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
