"""Options every analytics command shares: where the store is, the time range, the filters, --json."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from llmtally.exporter.api import extra_filters
from llmtally.exporter.api.params import FILTERS, RANGES, Filters, TimeRange, time_range
from llmtally.exporter.store import Store, open_store

if TYPE_CHECKING:  # the `serve` extra: `llmtally --version` works without it
    from llmtally.exporter.api.settings import Analytics
    from llmtally.exporter.config import Config
    from llmtally.exporter.price import Pricer


def add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="llmtally.yaml (default: $LLMTALLY_CONFIG, else ./llmtally.yaml if present)")
    parser.add_argument("--store", help="sqlite:///path/audit.db or postgresql://... (default sqlite:///llmtally.db)")


def add_range(parser: argparse.ArgumentParser, default: str) -> None:
    group = parser.add_argument_group("time range (UTC)")
    group.add_argument("--range", choices=RANGES, help=f"default {default}; 1h is the last hour; custom needs --start")
    group.add_argument("--start", help="ISO 8601 date or date-time")
    group.add_argument("--end", help="ISO 8601 date (inclusive) or date-time (exclusive); default now")
    parser.set_defaults(default_range=default)


def add_filters(parser: argparse.ArgumentParser, statuses: tuple[str, ...]) -> None:
    group = parser.add_argument_group("filters")
    for name in FILTERS:
        group.add_argument(f"--{name.replace('_', '-')}", dest=f"filter_{name}", metavar="VALUE")
    group.add_argument("--status", metavar="STATUS", help=f"{', '.join(statuses)}, or an HTTP status code such as 429")
    group.add_argument("--http-status", metavar="CODE", help="the exact HTTP status code (429, 500, ...)")
    group.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="a request parameter, e.g. temperature=0.2 (repeatable; VALUE may list several, comma-separated); "
        f"NAME among: {', '.join(extra_filters.FILTERABLE)}",
    )
    group.add_argument(
        "--dim",
        action="append",
        metavar="KEY=VALUE",
        help="a custom dimension declared under dimensions: in llmtally.yaml, e.g. team=platform (repeatable; "
        "VALUE may list several, comma-separated)",
    )
    parser.set_defaults(statuses=statuses)


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of tables")


def config_of(args: argparse.Namespace) -> Config:
    """The command's configuration (`--config`, the environment, `--store`), read once per command."""
    from llmtally.exporter.config import load  # needs the `serve` extra: `llmtally --version` works without it

    if getattr(args, "loaded_config", None) is None:
        args.loaded_config = load(args.config, store=args.store)
    config: Config = args.loaded_config
    return config


def open_from(args: argparse.Namespace) -> Store:
    """The store the command reads: --store, else $LLMTALLY_STORE, else the config file's, else the default."""
    return open_store(config_of(args).store)


def declared_dimensions(args: argparse.Namespace) -> tuple[str, ...]:
    """The custom dimensions `dimensions:` declares in the command's llmtally.yaml."""
    from llmtally.exporter.dimensions import Dimensions

    return Dimensions.from_config(config_of(args)).keys


def asked(args: argparse.Namespace) -> tuple[TimeRange, Filters]:
    span = time_range(args.range, args.start, args.end, default=args.default_range)
    return span, asked_filters(args)


def asked_filters(args: argparse.Namespace) -> Filters:
    """The filters of the command's options (--param and --dim included)."""
    values: dict[str, str | None] = {name: getattr(args, f"filter_{name}") for name in FILTERS}
    status = {"status": args.status, "http_status": args.http_status}
    filters = Filters.parse({**values, **status}, args.statuses)
    params = extra_filters.pairs(args.param, "--param")
    extra = {extra_filters.PARAM_PREFIX + k: v for k, v in params.items()} | extra_filters.pairs(args.dim, "--dim")
    if extra:
        dims = declared_dimensions(args) if args.dim else ()
        filters = replace(filters, json=extra_filters.parse(extra, dims))
    return filters


def analytics_from(args: argparse.Namespace) -> Analytics:
    """The `timezone:` and `health:` settings of the command's llmtally.yaml."""
    from llmtally.exporter.api.settings import Analytics

    return Analytics.from_config(config_of(args))


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def pricer_from(args: argparse.Namespace) -> Pricer:
    """The pricer of the command's llmtally.yaml (its `pricing:` overrides, markup and fees)."""
    from llmtally.exporter.price import Pricer, PricingConfig

    return Pricer(PricingConfig.from_dict(config_of(args).pricing))
