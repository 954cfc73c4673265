"""Audit store throughput and query latency on synthetic records (a benchmark, not a test).

``python bench/query_latency.py [--rows 1000000] [--sqlite PATH] [--pg DSN] [--runs 5]`` generates N records in
arrival (time) order over 30 days with realistic cardinalities (50 users in 10 departments with 2-4 features each
out of 20, 25 API keys, 10 models over 5 providers, 2 environments, ~3% errors, ~2% unpriced), writes them through
`Store.write` in batches of 512 and reports records/s, then the median latency of 30-day usage queries on the
rollups (by model, by user, by day) and, for comparison, the same group-by on the raw `completion_records` table.
Markdown goes to stdout; ``--json PATH`` also writes the figures as JSON. For a PostgreSQL server to point
``--pg`` at, ``python tests/pg_server.py`` starts a throwaway one (durable settings) and prints its DSN.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llmtally.exporter.normalise.record import Record
from llmtally.exporter.store import Store, open_store

BATCH = 512
DAYS = 30
DAY_NS = 86_400 * 10**9
START_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
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


def raw_group_by(store: Any, column: str) -> Callable[[], object]:
    """The same 30-day sums computed from completion_records directly (for comparison with the rollups)."""
    sql = (
        f"SELECT {column}, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(COALESCE(customer_cost_nusd, 0)) "
        f"FROM completion_records WHERE start_time_ns >= {store.placeholder} AND start_time_ns < {store.placeholder} "
        f"GROUP BY 1"
    )
    return lambda: store._query(sql, (START_NS, START_NS + DAYS * DAY_NS))


def latencies(store: Any, runs: int) -> dict[str, dict[str, float]]:
    end = START_NS + DAYS * DAY_NS
    queries: dict[str, Callable[[], object]] = {
        "usage by model (rollup)": lambda: store.usage(["request_model"], START_NS, end),
        "usage by user (rollup)": lambda: store.usage(["user_id"], START_NS, end),
        "usage by day (rollup)": lambda: store.usage(["day"], START_NS, end),
        "group by model (raw table)": raw_group_by(store, "request_model"),
        "group by user (raw table)": raw_group_by(store, "user_id"),
        "group by day (raw table)": raw_group_by(store, f"start_time_ns / {DAY_NS}"),
    }
    out = {}
    for name, query in queries.items():
        query()  # warm the cache
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            query()
            times.append(time.perf_counter() - t)
        out[name] = {"median_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000}
    return out


def run(name: str, url: str, rows: int, runs: int) -> dict[str, Any]:
    print(f"{name}: writing {rows:,} records to {url.split('@')[-1]}", file=sys.stderr)
    store = open_store(url)
    try:
        if store.count():
            raise SystemExit(f"{url}: not empty; give an empty database")
        result: dict[str, Any] = {"backend": name, **load(store, rows)}
        result["rollup_rows"] = store._query("SELECT COUNT(*) FROM completion_rollup_hourly", ())[0][0]
        result["queries"] = latencies(store, runs)
        return result
    finally:
        store.close()


def report(results: list[dict[str, Any]]) -> str:
    lines = ["| | " + " | ".join(r["backend"] for r in results) + " |", "|---" * (len(results) + 1) + "|"]
    lines.append("| records written | " + " | ".join(f"{r['records']:,}" for r in results) + " |")
    lines.append(
        "| write, records/s (batches of 512) | " + " | ".join(f"{r['records_per_s']:,.0f}" for r in results) + " |"
    )
    lines.append("| rollup rows | " + " | ".join(f"{r['rollup_rows']:,}" for r in results) + " |")
    for q in results[0]["queries"]:
        lines.append(
            f"| 30 days, {q}, median ms | " + " | ".join(f"{r['queries'][q]['median_ms']:.1f}" for r in results) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="runs per query (median reported)")
    parser.add_argument("--sqlite", help="SQLite file to create (default: a temporary file, removed at the end)")
    parser.add_argument("--pg", metavar="DSN", help="also run against this (empty) PostgreSQL database")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="llmtally-bench-") as tmp:
        path = args.sqlite or os.path.join(tmp, "audit.db")
        results.append(run("SQLite", f"sqlite:///{os.path.abspath(path)}", args.rows, args.runs))
        print(report(results), file=sys.stderr)
    if args.pg:
        results.append(run("PostgreSQL", args.pg, args.rows, args.runs))
    table = report(results)
    print(table)
    if args.json:
        meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "rows": args.rows}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
