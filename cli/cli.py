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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from llmtally.demo.console import run_demo

        return run_demo()
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
