"""Builds the llmtally Grafana dashboards into dashboards/*.json.

python grafana-dashboards/build.py           # (re)writes the JSON files
python grafana-dashboards/build.py --check   # fails when a committed file differs from what the code builds
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

sys.path.insert(0, str(Path(__file__).resolve().parent))

from panels import (
    BUDGET_STEPS,
    CREDIT_STEPS,
    ERROR_RATE_STEPS,
    REMAINING_STEPS,
    SELECT,
    SELECT_ENVIRONMENT,
    SELECT_PROVIDER_MODEL,
    SQL,
    SQL_WHERE,
    SUCCESS_STEPS,
    alert_annotation,
    audit_datasource_variable,
    bars,
    graph,
    grid,
    label_variable,
    new_dashboard,
    prometheus_variables,
    promql,
    single,
    sql_variables,
)

OUT = Path(__file__).resolve().parent / "dashboards"
R = "$__rate_interval"


def inc(family: str, by: str = "", window: str = "$__range", select: str = SELECT) -> str:
    """sum [by (...)] (increase(family{filters}[window]))."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (increase({family}{{{select}}}[{window}]))"


def rate(family: str, by: str = "", window: str = R, select: str = SELECT) -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({family}{{{select}}}[{window}]))"


def quantile(q: float, family: str, by: str = "", window: str = R) -> str:
    return (
        f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) (rate({family}_bucket{{{SELECT}}}[{window}])))"
    )


def spend(period: str, basis: str = "customer") -> str:
    """Today's / this week's / this month's spend from the store (the same on every replica: max, then sum over
    environments)."""
    select = f'period="{period}",basis="{basis}",{SELECT_ENVIRONMENT}'
    return f"sum(max without (instance, job) (completion_spend_usd{{{select}}}))"


def store_gauge(family: str, by: str, select: str = "") -> str:
    return f"max by ({by}) ({family}{{{select}}})"


# --- the dashboards ------------------------------------------------------------------------------------------------


def overview() -> dashboard.Dashboard:
    d = new_dashboard("llmtally-overview", "LLM overview", "Requests, success and errors, spend, tokens, top models.")
    d = d.variables(prometheus_variables()).annotation(alert_annotation())
    d = d.with_row(dashboard.Row("Totals"))
    d = d.with_panel(single("Requests", "short", promql(inc("completion_requests_total"), instant=True)))
    success = f"{inc('completion_requests_success_total')} / {inc('completion_requests_total')}"
    d = d.with_panel(single("Success rate", "percentunit", promql(success, instant=True), thresholds=SUCCESS_STEPS))
    d = d.with_panel(single("Errors", "short", promql(inc("completion_requests_error_total"), instant=True)))
    d = d.with_panel(single("Spend today", "currencyUSD", promql(spend("day"), instant=True)))
    d = d.with_panel(single("Spend this month", "currencyUSD", promql(spend("month"), instant=True)))
    d = d.with_panel(
        single(
            "Unpriced requests",
            "short",
            promql(inc("completion_unpriced_requests_total"), instant=True),
            "Requests with no price in the catalog: their cost counts as 0.",
            thresholds=((None, "green"), (1, "yellow")),
        )
    )
    d = d.with_row(dashboard.Row("Traffic"))
    d = d.with_panel(
        graph(
            "Requests per second: success and error",
            "reqps",
            [
                promql(rate("completion_requests_success_total"), "success", "A"),
                promql(rate("completion_requests_error_total"), "error", "B"),
            ],
            stack=True,
        )
    )
    kinds = [("prompt", "input"), ("completion", "output"), ("cached", "cached"), ("cache_write", "cache write")]
    kinds.append(("reasoning", "reasoning"))
    d = d.with_panel(
        graph(
            "Tokens per second by kind",
            "short",
            [promql(rate(f"completion_tokens_{k}_total"), name, chr(65 + i)) for i, (k, name) in enumerate(kinds)],
            "Input includes cache reads and writes; output includes reasoning.",
        )
    )
    top = f"topk(10, {inc('completion_requests_total', 'model')})"
    d = d.with_panel(bars("Top models by requests", "short", promql(top, "{{model}}", instant=True), width=12))
    top_cost = f"topk(10, {inc('completion_cost_usd_total', 'model')})"
    d = d.with_panel(bars("Top models by spend", "currencyUSD", promql(top_cost, "{{model}}", instant=True), width=12))
    return d


def cost() -> dashboard.Dashboard:
    d = new_dashboard(
        "llmtally-cost",
        "LLM cost and budgets",
        "Spend by provider, model, feature, department and environment; budgets.",
    )
    budget = label_variable("budget", "label_values(completion_budget_limit_usd, budget)")
    d = d.variables([*prometheus_variables(), budget]).annotation(alert_annotation())
    d = d.with_row(dashboard.Row("Spend"))
    for period, title in (("day", "today"), ("week", "this week"), ("month", "this month")):
        d = d.with_panel(single(f"Spend {title}", "currencyUSD", promql(spend(period), instant=True), width=6))
    d = d.with_panel(
        single("Provider cost this month", "currencyUSD", promql(spend("month", "provider"), instant=True), width=6)
    )
    d = d.with_panel(
        graph(
            "Spend by provider",
            "currencyUSD",
            [promql(inc("completion_cost_usd_total", "provider", R), "{{provider}}")],
            "Customer cost per interval.",
            stack=True,
        )
    )
    d = d.with_panel(
        graph(
            "Customer against provider cost",
            "currencyUSD",
            [
                promql(inc("completion_cost_usd_total", window=R), "customer", "A"),
                promql(inc("completion_provider_cost_usd_total", window=R), "provider", "B"),
            ],
            "What you bill (customer, with the configured markups) against what the providers charge.",
        )
    )
    for label in ("model", "feature", "department", "environment"):
        expr = f"sort_desc({inc('completion_cost_usd_total', label)})"
        d = d.with_panel(
            bars(f"Spend by {label}", "currencyUSD", promql(expr, f"{{{{{label}}}}}", instant=True), width=6)
        )
    d = d.with_row(dashboard.Row("Cache"))
    hit = f"{inc('completion_tokens_cached_total')} / {inc('completion_tokens_prompt_total')}"
    d = d.with_panel(
        single(
            "Cache hit ratio",
            "percentunit",
            promql(hit, instant=True),
            "Share of input tokens read from the provider's prompt cache (billed at the cache-read price).",
            width=6,
        )
    )
    d = d.with_panel(
        single("Cached input tokens", "short", promql(inc("completion_tokens_cached_total"), instant=True), width=6)
    )
    d = d.with_panel(
        graph(
            "Cached tokens by model",
            "short",
            [promql(inc("completion_tokens_cached_total", "model", R), "{{model}}")],
            width=12,
        )
    )
    d = d.with_row(dashboard.Row("Budgets and credits"))
    sel = 'budget=~"$budget"'
    d = d.with_panel(
        bars(
            "Budget utilisation",
            "percentunit",
            promql(
                store_gauge("completion_budget_utilization_ratio", "budget, period", sel),
                "{{budget}} ({{period}})",
                instant=True,
            ),
            "Spent / limit in the current period; green < 75 %, yellow 75-90 %, red > 90 %.",
            thresholds=BUDGET_STEPS,
            maximum=1,
        )
    )
    projection = (
        f"{store_gauge('completion_budget_projected_usd', 'budget, period', sel)}"
        f" / {store_gauge('completion_budget_limit_usd', 'budget, period', sel)}"
    )
    d = d.with_panel(
        bars(
            "Projected utilisation at period end",
            "percentunit",
            promql(projection, "{{budget}} ({{period}})", instant=True),
            "Linear projection of the period's spend, against the limit.",
            thresholds=BUDGET_STEPS,
            maximum=1,
        )
    )
    d = d.with_panel(
        single(
            "Credit remaining",
            "currencyUSD",
            promql(
                store_gauge("completion_credit_remaining_usd", "provider", 'provider=~"$provider"'),
                "{{provider}}",
                instant=True,
            ),
            "Configured balance minus the provider cost since the balance date.",
            thresholds=CREDIT_STEPS,
            width=8,
        )
    )
    d = d.with_panel(
        graph(
            "Budget spent, limit and projection",
            "currencyUSD",
            [
                promql(store_gauge("completion_budget_spent_usd", "budget", sel), "{{budget}} spent", "A"),
                promql(store_gauge("completion_budget_limit_usd", "budget", sel), "{{budget}} limit", "B"),
                promql(store_gauge("completion_budget_projected_usd", "budget", sel), "{{budget}} projected", "C"),
            ],
            width=16,
        )
    )
    d = d.with_panel(
        graph(
            "Credit balance and remaining",
            "currencyUSD",
            [
                promql(
                    store_gauge("completion_credit_balance_usd", "provider", 'provider=~"$provider"'),
                    "{{provider}} balance",
                    "A",
                ),
                promql(
                    store_gauge("completion_credit_remaining_usd", "provider", 'provider=~"$provider"'),
                    "{{provider}} remaining",
                    "B",
                ),
            ],
            width=8,
        )
    )
    return d


def performance() -> dashboard.Dashboard:
    d = new_dashboard(
        "llmtally-performance",
        "LLM performance",
        "Duration percentiles, time to first token, output tokens per second.",
    )
    d = d.variables(prometheus_variables()).annotation(alert_annotation())
    latency_steps = ((None, "green"), (30, "red"))
    d = d.with_panel(
        graph(
            "Duration p50 / p95 / p99",
            "s",
            [
                promql(quantile(q, "completion_duration_seconds"), f"p{int(q * 100)}", chr(65 + i))
                for i, q in enumerate((0.5, 0.95, 0.99))
            ],
            thresholds=latency_steps,
        )
    )
    d = d.with_panel(
        graph(
            "Time to first token p50 / p95 / p99",
            "s",
            [
                promql(quantile(q, "completion_time_to_first_token_seconds"), f"p{int(q * 100)}", chr(65 + i))
                for i, q in enumerate((0.5, 0.95, 0.99))
            ],
            "Streamed requests only.",
            thresholds=((None, "green"), (5, "red")),
        )
    )
    d = d.with_panel(
        graph(
            "Duration p95 by provider and model",
            "s",
            [promql(quantile(0.95, "completion_duration_seconds", "provider, model"), "{{provider}} {{model}}")],
        )
    )
    tps = (
        f"{rate('completion_tokens_completion_total', 'provider, model')}"
        f" / {rate('completion_duration_seconds_sum', 'provider, model')}"
    )
    d = d.with_panel(
        graph(
            "Output tokens per second by provider and model",
            "short",
            [promql(tps, "{{provider}} {{model}}")],
            "Output tokens over the time spent in requests (failed ones included).",
        )
    )
    ttft_top = f"topk(10, {quantile(0.95, 'completion_time_to_first_token_seconds', 'model', '$__range')})"
    d = d.with_panel(bars("Top 10 models by TTFT p95", "s", promql(ttft_top, "{{model}}", instant=True), width=12))
    tps_range = (
        f"topk(10, {inc('completion_tokens_completion_total', 'model')}"
        f" / {inc('completion_duration_seconds_sum', 'model')})"
    )
    d = d.with_panel(
        bars(
            "Top 10 models by output tokens per second", "short", promql(tps_range, "{{model}}", instant=True), width=12
        )
    )
    mean = (
        f"{inc('completion_duration_seconds_sum', 'provider')} / {inc('completion_duration_seconds_count', 'provider')}"
    )
    d = d.with_panel(bars("Mean duration by provider", "s", promql(mean, "{{provider}}", instant=True), width=24))
    return d


def errors() -> dashboard.Dashboard:
    d = new_dashboard(
        "llmtally-errors", "LLM errors", "Error rate, error types, failing providers and models, retries."
    )
    d = d.variables([*prometheus_variables(), audit_datasource_variable()]).annotation(alert_annotation())
    ratio = f"{rate('completion_requests_error_total')} / {rate('completion_requests_total')}"
    d = d.with_panel(
        single(
            "Error rate",
            "percentunit",
            promql(f"{inc('completion_requests_error_total')} / {inc('completion_requests_total')}", instant=True),
            "Yellow from 10 %, red from 25 % (the alert thresholds' defaults).",
            thresholds=ERROR_RATE_STEPS,
            width=6,
        )
    )
    d = d.with_panel(single("Errors", "short", promql(inc("completion_requests_error_total"), instant=True), width=6))
    retries_total = (
        "SELECT count(*) AS retries FROM completion_records, jsonb_array_elements(events::jsonb) AS e"
        f" WHERE e->>'name' = 'retry' AND $__timeFilter(start_time) AND {SQL_WHERE}"
    )
    d = d.with_panel(
        single(
            "Retries",
            "short",
            SQL(retries_total),
            "HTTP attempts the SDKs retried (from the audit store: each record's retry events).",
            width=6,
        )
    )
    d = d.with_panel(
        single(
            "Requests with a retry",
            "short",
            SQL(
                "SELECT count(*) AS requests FROM completion_records WHERE events LIKE '%\"retry\"%'"
                f" AND $__timeFilter(start_time) AND {SQL_WHERE}"
            ),
            width=6,
        )
    )
    d = d.with_panel(graph("Error rate", "percentunit", [promql(ratio, "error rate")], thresholds=ERROR_RATE_STEPS))
    d = d.with_panel(
        graph(
            "Errors per second by type",
            "reqps",
            [promql(rate("completion_requests_error_total", "error_type"), "{{error_type}}")],
            stack=True,
        )
    )
    d = d.with_panel(
        bars(
            "Errors by type",
            "short",
            promql(
                f"sort_desc({inc('completion_requests_error_total', 'error_type')})", "{{error_type}}", instant=True
            ),
        )
    )
    d = d.with_panel(
        bars(
            "Errors by provider and model",
            "short",
            promql(
                f"sort_desc({inc('completion_requests_error_total', 'provider, model')})",
                "{{provider}} {{model}}",
                instant=True,
            ),
        )
    )
    by_provider = (
        f"{inc('completion_requests_error_total', 'provider')} / {inc('completion_requests_total', 'provider')}"
    )
    d = d.with_panel(
        bars(
            "Error rate by provider",
            "percentunit",
            promql(by_provider, "{{provider}}", instant=True),
            thresholds=ERROR_RATE_STEPS,
            maximum=1,
        )
    )
    retries = (
        "SELECT provider, request_model AS model, e->>'error.type' AS error_type, count(*) AS retries"
        " FROM completion_records, jsonb_array_elements(events::jsonb) AS e"
        f" WHERE e->>'name' = 'retry' AND $__timeFilter(start_time) AND {SQL_WHERE}"
        " GROUP BY 1, 2, 3 ORDER BY retries DESC"
    )
    d = d.with_panel(grid("Retries by provider, model and cause", [SQL(retries)], width=24))
    return d


def capacity() -> dashboard.Dashboard:
    d = new_dashboard(
        "llmtally-capacity",
        "LLM capacity",
        "Provider rate limits: remaining against limit; requests and tokens per minute.",
    )
    d = d.variables(prometheus_variables()).annotation(alert_annotation())
    by = "provider, model, kind"
    remaining = (
        f"{store_gauge('completion_ratelimit_remaining', by, SELECT_PROVIDER_MODEL)}"
        f" / {store_gauge('completion_ratelimit_limit', by, SELECT_PROVIDER_MODEL)}"
    )
    d = d.with_panel(
        bars(
            "Rate limit remaining (share of the limit)",
            "percentunit",
            promql(remaining, "{{provider}} {{model}} {{kind}}", instant=True),
            "The last rate-limit headers each provider sent; red below 10 % (the alert's default).",
            thresholds=REMAINING_STEPS,
            width=24,
            maximum=1,
        )
    )
    for kind in ("requests", "tokens"):
        select = f'{SELECT_PROVIDER_MODEL},kind="{kind}"'
        d = d.with_panel(
            graph(
                f"Rate limit: {kind} remaining and limit",
                "short",
                [
                    promql(
                        store_gauge("completion_ratelimit_remaining", "provider, model", select),
                        "{{provider}} {{model}} remaining",
                        "A",
                    ),
                    promql(
                        store_gauge("completion_ratelimit_limit", "provider, model", select),
                        "{{provider}} {{model}} limit",
                        "B",
                    ),
                ],
            )
        )
    d = d.with_panel(
        graph(
            "Requests per minute by provider and model",
            "short",
            [promql(f"60 * {rate('completion_requests_total', 'provider, model')}", "{{provider}} {{model}}")],
            "RPM used, to compare with the requests limit.",
        )
    )
    d = d.with_panel(
        graph(
            "Tokens per minute by provider and model",
            "short",
            [promql(f"60 * {rate('completion_tokens_total', 'provider, model')}", "{{provider}} {{model}}")],
            "TPM used, to compare with the tokens limit.",
        )
    )
    return d


AUDIT_COLUMNS = (
    'start_time AS "time", record_id AS request, provider, request_model AS model, user_id AS "user", feature,'
    " environment, status, error_type, http_status, input_tokens, output_tokens, total_tokens,"
    " customer_cost_nusd / 1e9 AS cost_usd, duration_s, ttft_s"
)


def audit() -> dashboard.Dashboard:
    d = new_dashboard(
        "llmtally-audit", "LLM audit log", "The request log from the audit store: who called which model, tokens, cost."
    )
    api = dashboard.TextBoxVariable("api_url").label("llmtally API").default_value("http://127.0.0.1:4318")
    d = d.variables([*sql_variables(), api])
    where = f"$__timeFilter(start_time) AND {SQL_WHERE}"
    d = d.with_panel(
        single(
            "Requests",
            "short",
            SQL(f"SELECT count(*) AS requests FROM completion_records WHERE {where}"),
            width=6,
        )
    )
    d = d.with_panel(
        single(
            "Errors",
            "short",
            SQL(f"SELECT count(*) AS errors FROM completion_records WHERE status = 'error' AND {where}"),
            width=6,
        )
    )
    d = d.with_panel(
        single(
            "Spend",
            "currencyUSD",
            SQL(f"SELECT COALESCE(sum(customer_cost_nusd), 0) / 1e9 AS spend FROM completion_records WHERE {where}"),
            width=6,
        )
    )
    d = d.with_panel(
        single(
            "Users",
            "short",
            SQL(f"SELECT count(DISTINCT user_id) AS users FROM completion_records WHERE {where}"),
            width=6,
        )
    )
    link = (
        dashboard.DashboardLink("Request details (API)")
        .url("${api_url}/api/v1/requests/${__value.raw}")
        .target_blank(True)
    )
    log = grid(
        "Recent requests",
        [SQL(f"SELECT {AUDIT_COLUMNS} FROM completion_records WHERE {where} ORDER BY start_time DESC LIMIT 500")],
        "Newest first (500 at most). Click a request id for every stored field, its events and payloads.",
    )
    log = log.override_by_name("request", [_links(link)]).override_by_name("cost_usd", [_unit("currencyUSD")])
    log = log.override_by_name("duration_s", [_unit("s")]).override_by_name("ttft_s", [_unit("s")])
    d = d.with_panel(log)
    users = (
        "SELECT COALESCE(user_id, '') AS \"user\", count(*) AS requests, sum(total_tokens) AS tokens,"
        " COALESCE(sum(customer_cost_nusd), 0) / 1e9 AS cost_usd,"
        " sum(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS errors"
        f" FROM completion_records WHERE {where} GROUP BY 1 ORDER BY cost_usd DESC"
    )
    d = d.with_panel(grid("Usage by user", [SQL(users)], width=12).override_by_name("cost_usd", [_unit("currencyUSD")]))
    failed = (
        f"SELECT {AUDIT_COLUMNS}, error_message FROM completion_records WHERE status = 'error' AND {where}"
        " ORDER BY start_time DESC LIMIT 100"
    )
    d = d.with_panel(grid("Recent errors", [SQL(failed)], width=12).override_by_name("request", [_links(link)]))
    return d


def _unit(unit: str) -> Any:
    from grafana_foundation_sdk.models.dashboard import DynamicConfigValue

    return DynamicConfigValue(id_val="unit", value=unit)


def _links(link: dashboard.DashboardLink) -> Any:
    from grafana_foundation_sdk.models.dashboard import DynamicConfigValue

    built = link.build().to_json()
    return DynamicConfigValue(
        id_val="links", value=[{"title": built["title"], "url": built["url"], "targetBlank": True}]
    )


DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "overview": overview,
    "cost": cost,
    "performance": performance,
    "errors": errors,
    "capacity": capacity,
    "audit": audit,
}


# Keys the SDK writes on every variable though only interval variables have them (not in Grafana's schema).
_INTERVAL_ONLY = ("auto", "auto_count", "auto_min")


def render(build: Callable[[], dashboard.Dashboard]) -> str:
    document = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    for variable in document.get("templating", {}).get("list", []):
        if variable["type"] != "interval":
            for key in _INTERVAL_ONLY:
                variable.pop(key, None)
    for number, panel in enumerate(_panels(document), start=1):
        panel["id"] = number
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _panels(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows and the panels inside collapsed rows included, in order."""
    found = []
    for panel in document.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def built() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{name}.json": render(build) for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args(argv)
    files = built()
    if args.check:
        stale = [name for name, text in files.items() if not (OUT / name).exists() or (OUT / name).read_text() != text]
        for name in stale:
            print(f"{OUT / name} is not what build.py builds: run python grafana-dashboards/build.py", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
