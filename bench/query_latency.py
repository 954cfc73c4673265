"""Audit store writes, report and request-log latency, and CSV export on synthetic records (a benchmark, not a test).

``python bench/query_latency.py [--rows 1000000] [--sqlite PATH] [--pg DSN] [--runs 5] [--json PATH]`` generates N
records in arrival (time) order over 30 days with realistic cardinalities (50 users in 10 departments with 2-4
features each out of 20, 25 API keys, 10 models over 5 providers, 2 environments, ~3% errors, ~2% unpriced), writes
them through `Store.write` in batches of 512 and reports, per backend (SQLite, and PostgreSQL with ``--pg``):

1. write throughput (records/s) and the row counts of every rollup table (each family's hourly and daily);
2. the API reports over 30 days (`reports.usage` by model, user, day, user+day, by model for one user, and by model
   over an unaligned ~30-day range whose edges are read from the records; `reports.errors`, `reports.insights`; by
   ISO week in Europe/Paris, by model for HTTP status 429, by a custom dimension (`team`, 5 values), by model for one
   of 200 customers (a dimension) and for one temperature (a request parameter), and a statement by department);
3. the request log (`reports.request_log`, 50 per page, newest first): the first page unfiltered, for one user,
   for errors and for one response model, page 20 reached through the cursors, `store.get(id)`, and the first page
   sorted by cost and by latency;
4. the same 30-day group-bys computed on the raw `completion_records` table, for comparison with the rollups;
5. CSV exports (`export.stream(store.iter_records(...), "csv")`) of the first N days for each N of ``--export-days``
   (default 3 and 30: ~10% of the rows, then all), each in a fresh process (`bench/export_memory.py`): records/s,
   bytes and peak memory growth.

``--reuse`` times a database an earlier run filled (same ``--rows``) instead of writing it again: opening it applies
the pending migrations (their time is reported), and no write throughput is measured.

Latencies are the median and minimum of ``--runs`` runs after one warm-up run. Markdown goes to stdout; ``--json``
also writes the figures as JSON, and ``--report A.json B.json ...`` prints the tables of earlier runs side by side.
For a PostgreSQL server to point ``--pg`` at, ``python tests/pg_server.py`` starts a throwaway one (durable
settings) and prints its DSN.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from llmtally.exporter.api import extra_filters, reports
from llmtally.exporter.api.params import Filters, TimeRange
from llmtally.exporter.normalise.record import Record
from llmtally.exporter.reports import statement
from llmtally.exporter.store import Store, open_store
from llmtally.exporter.store.rollup import ROLLUPS

BATCH = 512
DAYS = 30
DAY_NS = 86_400 * 10**9
HOUR_NS = 3_600 * 10**9
EDGE_NS = 29 * 60 * 10**9 + 13_500_000_000  # 29 min 13.5 s: the unaligned range's offset
START_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
END_NS = START_NS + DAYS * DAY_NS
USER = "user_07"  # the user of the filtered queries (~2% of the records)
RESPONSE_MODEL = "o3-mini-2025-06-01"  # the response model of the filtered request log (~10% of the records)
PAGE = 50
EXPORT_SCRIPT = Path(__file__).with_name("export_memory.py")

# model -> (provider, input $/Mtok, output $/Mtok); the ollama model has no price.
MODELS = {
    "gpt-4o": ("openai", 2.5, 10.0),
    "gpt-4o-mini": ("openai", 0.15, 0.6),
    "o3-mini": ("openai", 1.1, 4.4),
    "claude-sonnet-4-5": ("anthropic", 3.0, 15.0),
    "claude-haiku-4-5": ("anthropic", 1.0, 5.0),
    "llama-3.3-70b-versatile": ("groq", 0.59, 0.79),
    "mixtral-8x7b": ("groq", 0.24, 0.24),
    "mistral-large-latest": ("mistral_ai", 2.0, 6.0),
    "mistral-small-latest": ("mistral_ai", 0.2, 0.6),
    "llama3.2": ("ollama", 0.0, 0.0),
}
TEMPERATURES = (0.0, 0.2, 0.7, 1.0)
ZONE = ZoneInfo("Europe/Paris")  # week and month buckets in a zone an hour off UTC
ERRORS = (("rate_limit", 429), ("server_error", 500), ("timeout", None), ("invalid_request", 400))


def synthetic_records(n: int, seed: int = 7) -> Iterator[Record]:
    """N records in arrival order, spread evenly over DAYS days (the receiver sees them roughly in time order)."""
    rnd = random.Random(seed)
    features = [f"feature_{i:02d}" for i in range(20)]
    users = []
    for u in range(50):
        users.append(
            (
                f"user_{u:02d}",
                f"team-{u % 25:02d}",
                f"dept_{u % 10}",
                rnd.sample(features, rnd.randint(2, 4)),
                rnd.sample(list(MODELS), 3),
            )
        )
    step = DAYS * DAY_NS // n
    for i in range(n):
        user, key, dept, user_features, user_models = users[rnd.randrange(50)]
        model = rnd.choice(user_models)
        provider, in_price, out_price = MODELS[model]
        start = START_NS + i * step + rnd.randrange(step + 1)
        duration = rnd.uniform(0.2, 8.0)
        stream = rnd.random() < 0.5
        embeddings = rnd.random() < 0.05
        error = ERRORS[rnd.randrange(4)] if rnd.random() < 0.03 else None
        input_tokens = 0 if error else int(rnd.lognormvariate(6.5, 1.0))
        output_tokens = 0 if error or embeddings else int(rnd.lognormvariate(5.0, 1.0))
        cached = input_tokens // 2 if rnd.random() < 0.3 else 0
        reasoning = output_tokens // 3 if model.startswith("o3") else 0
        priced = provider != "ollama"
        cost = round((input_tokens * in_price + output_tokens * out_price) * 1000) if priced else None
        yield Record(
            record_id=f"{rnd.getrandbits(64):016x}",
            start_time_ns=start,
            end_time_ns=start + int(duration * 1e9),
            trace_id=f"{rnd.getrandbits(128):032x}",
            span_id=f"{rnd.getrandbits(64):016x}",
            provider=provider,
            operation="embeddings" if embeddings else "chat",
            request_model=model,
            response_model=f"{model}-2025-06-01",
            status="error" if error else "success",
            http_status=error[1] if error else 200,
            error_type=error[0] if error else None,
            error_message=f"{error[0]}: upstream said no" if error else None,
            duration_s=duration,
            ttft_s=rnd.uniform(0.1, 1.0) if stream and not error else None,
            stream=stream,
            stream_outcome="completed" if stream else None,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
            cached_tokens=cached,
            reasoning_tokens=reasoning,
            usage_source="none" if error else "provider",
            provider_cost_nusd=cost,
            customer_cost_nusd=None if cost is None else cost * 6 // 5 + 100_000,
            price_source=f"genai-prices {provider}/{model}" if priced else "unpriced",
            priced=priced,
            user_id=user,
            api_key=key,
            feature=rnd.choice(user_features),
            department=dept,
            environment="production" if rnd.random() < 0.9 else "staging",
            service="signal-service",
            source_ip=f"10.0.{rnd.randrange(4)}.{rnd.randrange(1, 250)}",
            response_id=f"chatcmpl-{rnd.getrandbits(64):x}",
            request_id=f"req_{rnd.getrandbits(64):x}",
            finish_reasons=[] if error else ["stop"],
            events=[{"type": "retry", "attempt": 1}] if error and rnd.random() < 0.5 else [],
            params={"temperature": rnd.choice(TEMPERATURES), "max_tokens": rnd.choice((256, 1024, 4096))},
            dimensions={"team": f"team_{int(dept[-1]) % 5}", "customer": f"customer_{rnd.randrange(200):03d}"},
        )


def load(store: Store, rows: int) -> dict[str, float]:
    """Write the synthetic records through Store.write in batches; time only the writes."""
    written = 0
    spent = 0.0
    batch: list[Record] = []
    started = time.perf_counter()
    for record in synthetic_records(rows):
        batch.append(record)
        if len(batch) == BATCH:
            t = time.perf_counter()
            written += len(store.write(batch))
            spent += time.perf_counter() - t
            batch = []
            if written % (BATCH * 200) == 0:
                print(f"  {written:,} written, {written / spent:,.0f} records/s", file=sys.stderr)
    if batch:
        t = time.perf_counter()
        written += len(store.write(batch))
        spent += time.perf_counter() - t
    assert written == rows == store.count(), (written, rows)
    return {"records": rows, "write_s": spent, "records_per_s": rows / spent, "total_s": time.perf_counter() - started}


def timed(query: Callable[[], object], runs: int) -> dict[str, float]:
    """Median and minimum wall time of `runs` calls, after one warm-up call."""
    query()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        query()
        times.append(time.perf_counter() - t)
    return {"median_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000}


def measure(queries: dict[str, Callable[[], object]], runs: int) -> dict[str, dict[str, float]]:
    return {name: timed(query, runs) for name, query in queries.items()}


def report_latencies(store: Store, runs: int) -> dict[str, dict[str, float]]:
    """The API reports over the 30 days, as the HTTP API and the commands call them."""
    days = TimeRange("custom", START_NS, END_NS)
    # 29 days 23 h from 00:29:13.5 on the first day to 23:29:13.5 on the last: whole days from the daily rollup, the
    # edge days' whole hours from the hourly one and ~30 minutes at each end from the records.
    unaligned = TimeRange("custom", START_NS + EDGE_NS, END_NS - HOUR_NS + EDGE_NS)
    everything, one_user = Filters(), Filters({"user": USER})
    status_429 = Filters(http_status=(429,))
    one_customer = _json_filters({"customer": ["customer_007"]})
    cool = _json_filters({"param.temperature": ["0.2"]})
    return measure(
        {
            "usage by model": lambda: reports.usage(store, days, everything, ["model"]),
            "usage by user": lambda: reports.usage(store, days, everything, ["user"]),
            "usage by day": lambda: reports.usage(store, days, everything, ["day"]),
            "usage by user and day": lambda: reports.usage(store, days, everything, ["user", "day"]),
            f"usage by model, user={USER}": lambda: reports.usage(store, days, one_user, ["model"]),
            "usage by model, unaligned range": lambda: reports.usage(store, unaligned, everything, ["model"]),
            "errors": lambda: reports.errors(store, days, everything),
            "insights": lambda: reports.insights(store, days, everything),
            "usage by week (Europe/Paris)": lambda: reports.usage(store, days, everything, ["week"], ZONE),
            "usage by model, http_status=429": lambda: reports.usage(store, days, status_429, ["model"]),
            "usage by team (a custom dimension)": lambda: reports.usage(store, days, everything, ["team"]),
            "usage by model, customer=customer_007": lambda: reports.usage(store, days, one_customer, ["model"]),
            "usage by model, param.temperature=0.2": lambda: reports.usage(store, days, cool, ["model"]),
            "statement by department (a month)": lambda: statement.build(
                store, days, everything, ["department"], lambda _: 100_000, keep=False
            ),
        },
        runs,
    )


def _json_filters(given: dict[str, list[str]]) -> Filters:
    return Filters(json=extra_filters.parse(given, ("team", "customer")))


def request_log_latencies(store: Store, runs: int) -> dict[str, dict[str, float]]:
    """Request-log pages of 50, newest first, over the 30 days; page 20 with the cursor the first 19 pages led to."""
    days = TimeRange("custom", START_NS, END_NS)
    everything = Filters()
    cursor = None
    for _ in range(19):
        cursor = reports.request_log(store, days, everything, PAGE, cursor)["next_cursor"]
    record_id = store.records_between(START_NS + DAYS * DAY_NS // 2, END_NS, 1)[0].record_id
    return measure(
        {
            "first page": lambda: reports.request_log(store, days, everything, PAGE),
            f"first page, user={USER}": lambda: reports.request_log(store, days, Filters({"user": USER}), PAGE),
            "first page, status=error": lambda: reports.request_log(store, days, Filters(status="error"), PAGE),
            f"first page, response_model={RESPONSE_MODEL}": lambda: reports.request_log(
                store, days, Filters({"response_model": RESPONSE_MODEL}), PAGE
            ),
            "page 20 (by cursor)": lambda: reports.request_log(store, days, everything, PAGE, cursor),
            "first page, sorted by cost": lambda: reports.request_log(store, days, everything, PAGE, sort="-cost"),
            "first page, sorted by latency": lambda: reports.request_log(
                store, days, everything, PAGE, sort="-latency"
            ),
            "store.get(id)": lambda: store.get(record_id),
        },
        runs,
    )


def raw_group_by(store: Any, column: str) -> Callable[[], object]:
    """The 30-day sums computed from completion_records directly (for comparison with the rollups)."""
    sql = (
        f"SELECT {column}, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(COALESCE(customer_cost_nusd, 0)) "
        f"FROM completion_records WHERE start_time_ns >= {store.placeholder} AND start_time_ns < {store.placeholder} "
        f"GROUP BY 1"
    )
    return lambda: store._query(sql, (START_NS, END_NS))


def raw_latencies(store: Any, runs: int) -> dict[str, dict[str, float]]:
    return measure(
        {
            "group by model": raw_group_by(store, "request_model"),
            "group by user": raw_group_by(store, "user_id"),
            "group by day": raw_group_by(store, f"start_time_ns / {DAY_NS}"),
        },
        runs,
    )


def rollup_rows(store: Any) -> dict[str, int]:
    """Rows of each rollup table, by its name without the `completion_rollup_` prefix."""
    return {
        r.table.removeprefix("completion_rollup_"): int(store._query(f"SELECT COUNT(*) FROM {r.table}", ())[0][0])
        for r in ROLLUPS
    }


def export_csv(url: str, days: int) -> dict[str, Any]:
    """A CSV export of the first `days` days, in a fresh process (see bench/export_memory.py)."""
    command = [sys.executable, str(EXPORT_SCRIPT), url, "--start-ns", str(START_NS)]
    command += ["--end-ns", str(START_NS + days * DAY_NS)]
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return {"days": days, **json.loads(done.stdout)}


def run(
    name: str, url: str, rows: int, runs: int, export_days: list[int], reuse: bool = False, raw: bool = True
) -> dict[str, Any]:
    def step(text: str) -> None:
        print(f"{name}: {text}", file=sys.stderr, flush=True)

    step(f"opening {url.split('@')[-1]} (applying pending migrations)")
    started = time.perf_counter()
    store = open_store(url)
    opened_s = time.perf_counter() - started
    try:
        stored = store.count()
        result: dict[str, Any] = {"backend": name, "open_s": opened_s}
        if stored and not reuse:
            raise SystemExit(f"{url}: not empty; give an empty database (or --reuse to time the records it holds)")
        if stored:
            if stored != rows:
                raise SystemExit(f"{url}: holds {stored:,} records, not --rows {rows:,}")
            step(f"reusing the {stored:,} records stored (no writes timed)")
            result["records"] = stored
        else:
            step(f"writing {rows:,} records")
            result.update(load(store, rows))
        result["rollup_rows"] = rollup_rows(store)
        step("reports")
        result["reports"] = report_latencies(store, runs)
        step("request log")
        result["request_log"] = request_log_latencies(store, runs)
        result["raw"] = {}
        if raw:
            step("raw group-bys")
            result["raw"] = raw_latencies(store, runs)
        result["exports"] = []
        for days in export_days:
            step(f"CSV export of {days} days")
            result["exports"].append(export_csv(url, days))
        return result
    finally:
        store.close()


def _count(n: int) -> str:
    for unit, size in (("M", 10**6), ("k", 10**3)):
        if n >= size and n % (size // 10) == 0:
            return f"{n / size:g}{unit}"
    return f"{n:,}"


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def _rollup_cell(table: str, result: dict[str, Any]) -> str:
    rows = result["rollup_rows"].get(table)
    return "-" if rows is None else f"{rows:,}"


def _latency_cell(section: str, name: str) -> Callable[[dict[str, Any]], str]:
    def cell(r: dict[str, Any]) -> str:
        figures = r.get(section, {}).get(name)
        return "-" if figures is None else f"{_ms(figures['median_ms'])} / {_ms(figures['min_ms'])}"

    return cell


def _export_cell(days: int, key: str, text: Callable[[Any], str]) -> Callable[[dict[str, Any]], str]:
    """A cell of the table of the export of `days` days ('-' for a run without that export)."""
    return lambda r: next((text(e[key]) for e in r["exports"] if e["days"] == days), "-")


def report(results: list[dict[str, Any]]) -> str:
    """Markdown tables, one column per run."""
    header = "| | " + " | ".join(f"{r['backend']}, {_count(r['records'])} rows" for r in results) + " |"
    rule = "|---" * (len(results) + 1) + "|"

    def table(title: str, rows: list[tuple[str, Callable[[dict[str, Any]], str]]]) -> list[str]:
        lines = [f"**{title}**", "", header, rule]
        lines += [f"| {label} | " + " | ".join(cell(r) for r in results) + " |" for label, cell in rows]
        return [*lines, ""]

    def latency_rows(section: str) -> list[tuple[str, Callable[[dict[str, Any]], str]]]:
        names = dict.fromkeys(name for r in results for name in r.get(section, {}))
        return [(name, _latency_cell(section, name)) for name in names]

    tables = list(dict.fromkeys(t for r in results for t in r["rollup_rows"]))
    out = table(
        "Writes (batches of 512) and rollup rows",
        [
            ("records/s", lambda r: f"{r['records_per_s']:,.0f}" if "records_per_s" in r else "-"),
            ("open_store (pending migrations), s", lambda r: f"{r['open_s']:,.1f}" if "open_s" in r else "-"),
            *((f"{t} rollup rows", functools.partial(_rollup_cell, t)) for t in tables),
        ],
    )
    out += table("API reports, 30 days: median / min ms", latency_rows("reports"))
    out += table("Request log, 50 per page, newest first: median / min ms", latency_rows("request_log"))
    if any(r.get("raw") for r in results):
        out += table("Raw table (completion_records), 30 days: median / min ms", latency_rows("raw"))
    for days in sorted({e["days"] for result in results for e in result["exports"]}):
        figure = functools.partial(_export_cell, days)
        out += table(
            f"CSV export of {'all 30 days' if days == DAYS else f'the first {days} days'}, fresh process",
            [
                ("records", figure("records", "{:,}".format)),
                ("records/s", figure("records_per_s", "{:,.0f}".format)),
                ("CSV size, MiB", figure("bytes", lambda v: f"{v / 2**20:,.0f}")),
                ("RSS before, MiB", figure("rss_before_mib", "{:,.0f}".format)),
                ("peak RSS growth, MiB", figure("rss_growth_mib", "{:,.0f}".format)),
                ("of which anonymous (heap, SQLite cache)", figure("anon_growth_mib", "{:,.0f}".format)),
                ("of which file-backed (SQLite mmap)", figure("file_growth_mib", "{:,.0f}".format)),
            ],
        )
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="runs per query after one warm-up (median reported)")
    parser.add_argument("--sqlite", help="SQLite file to create (default: a temporary file, removed at the end)")
    parser.add_argument("--pg", metavar="DSN", help="also run against this (empty) PostgreSQL database")
    parser.add_argument("--no-sqlite", action="store_true", help="skip SQLite (with --pg: PostgreSQL only)")
    parser.add_argument(
        "--export-days",
        default=f"3,{DAYS}",
        help="CSV exports to time, each of the first N days (default: %(default)s; '' for none)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="time the records a non-empty --sqlite file or --pg database already holds (written by an earlier run "
        "with the same --rows) instead of writing them; opening it applies pending migrations",
    )
    parser.add_argument("--no-raw", action="store_true", help="skip the group-bys on the raw table (slow at 10M)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--report", type=Path, nargs="+", metavar="JSON", help="only print the tables of these runs")
    args = parser.parse_args(argv)
    if args.report:
        print(report([r for path in args.report for r in json.loads(path.read_text())["results"]]), end="")
        return
    export_days = [int(d) for d in args.export_days.split(",") if d.strip()]
    meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "rows": args.rows, "runs": args.runs}
    results: list[dict[str, Any]] = []

    def done(result: dict[str, Any]) -> None:
        """Keeps one backend's figures (written at once with --json, so a later failure loses nothing)."""
        results.append(result)
        print(report(results), file=sys.stderr)
        if args.json:
            args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")

    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="llmtally-bench-") as tmp:
            path = args.sqlite or os.path.join(tmp, "audit.db")
            done(
                run(
                    "SQLite",
                    f"sqlite:///{os.path.abspath(path)}",
                    args.rows,
                    args.runs,
                    export_days,
                    args.reuse,
                    not args.no_raw,
                )
            )
    if args.pg:
        done(run("PostgreSQL", args.pg, args.rows, args.runs, export_days, args.reuse, not args.no_raw))
    if results:
        print(report(results), end="")


if __name__ == "__main__":
    main()
