"""The `llmtally` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmtally", description="LLM usage, cost and audit analytics on OpenTelemetry"
    )
    parser.add_argument("--version", action="version", version=f"llmtally {metadata.version('llmtally')}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "demo", help="run an instrumented example app against a local fake provider and show its telemetry"
    )
    serve = commands.add_parser("serve", help="run the OTLP receiver: price, store and expose every LLM request")
    serve.add_argument("--config", help="llmtally.yaml (default: $LLMTALLY_CONFIG, else ./llmtally.yaml if present)")
    serve.add_argument("--store", help="sqlite:///path/audit.db or postgresql://... (default sqlite:///llmtally.db)")
    serve.add_argument("--otlp-grpc", metavar="HOST:PORT", help="OTLP/gRPC listen address (default 127.0.0.1:4317)")
    serve.add_argument("--http", metavar="HOST:PORT", help="HTTP listen address (default 127.0.0.1:4318)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from llmtally.demo.console import run_demo

        return run_demo()
    if args.command == "serve":
        from llmtally.exporter.config import ConfigError, load
        from llmtally.exporter.price import PricingConfigError
        from llmtally.exporter.serve import serve
        from llmtally.exporter.store import StoreError

        try:
            config = load(args.config, store=args.store, otlp_grpc=args.otlp_grpc, http=args.http)
            return serve(config)
        except (ConfigError, PricingConfigError) as error:
            print(f"llmtally serve: {error}", file=sys.stderr)
            return 2
        except (StoreError, OSError) as error:
            print(f"llmtally serve: {error}", file=sys.stderr)
            return 1
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
