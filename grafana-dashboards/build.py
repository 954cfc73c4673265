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

from grafana_foundation_sdk.builders import common, dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models

sys.path.insert(0, str(Path(__file__).resolve().parent))

from panels import (
    FILTERS,
    INFINITY_TYPE,
    SELECT,
    SELECT_ENVIRONMENT,
    SELECT_NO_FEATURE,
    SELECT_PROVIDER_MODEL,
    APIRequest,
    Column,
    alert_annotation,
    alert_list,
    bars,
    bars_of_interval,
    datasource_variable,
    graph,
    grid,
    label_variable,
    new_dashboard,
    promql,
    single,
    thresholds_from,
    top,
    total,
    usage,
    variables,
)

OUT = Path(__file__).resolve().parent / "dashboards"
R = "$__rate_interval"
STEP = "$__interval"


def rate(family: str, by: str = "", window: str = R, select: str = SELECT) -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({family}{{{select}}}[{window}]))"


def or_zero(expr: str) -> str:
    """`expr`, or 0 when it has no series (a healthy selection: no error series yet)."""
    return f"({expr}) or on () vector(0)"


def per_interval(family: str, by: str = "", select: str = SELECT) -> str:
    """What a counter counted in each $__interval, for a query whose step is $__interval: the windows meet without
    overlapping, so the points add up to the range's total. The difference of the counter's values at the step's
    ends (exact, telescoping over the steps; a scrape gap shorter than the lookback changes nothing), a series new in
    the window counted in full (its first value), and increase() across a counter reset."""
    x = f"{family}{{{select}}}"
    grouping = f" by ({by})" if by else ""
    counted = f"(({x} - {x} offset {STEP}) >= 0) or ({x} unless {x} offset {STEP}) or increase({x}[{STEP}])"
    return f"sum{grouping} ({counted})"


def quantile(q: float, family: str, by: str = "", window: str = R) -> str:
    return (
        f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) (rate({family}_bucket{{{SELECT}}}[{window}])))"
    )


def rule_ratio(numerator: str, denominator: str, by: str, select: str = SELECT) -> str:
    """A ratio of two increase recording rules (the windows the alerts evaluate), 0 errors shown as 0."""
    den = f"sum by ({by}) ({denominator}{{{select}}})"
    num = f"(sum by ({by}) ({numerator}{{{select}}}) or {den} * 0)"
    return f"{num} / {den}"


def spend(period: str, basis: str = "customer") -> str:
    """This week's / this month's spend from the store (the same on every replica: max, then sum over
    environments)."""
    select = f'period="{period}",basis="{basis}",{SELECT_ENVIRONMENT}'
    return f"sum(max without (instance, job) (completion_spend_usd{{{select}}}))"


def store_gauge(family: str, by: str, select: str = "") -> str:
    return f"max by ({by}) ({family}{{{select}}})"


# --- the API panels ------------------------------------------------------------------------------------------------

EXACT = "Exact, from llmtally's API (the audit store) for the dashboard's range and every filter."


def grouped(label: str, figure: str, kind: str = "number") -> APIRequest:
    """Usage grouped by `label` over the range: one row per value, the figure beside."""
    return usage("rows", [(label, label, "string"), (figure, figure, kind)], label)


REQUEST_COLUMNS: list[Column] = [
    ("timestamp", "time", "timestamp"),
    ("id", "request", "string"),
    ("provider", "provider", "string"),
    ("model", "model", "string"),
    ("user", "user", "string"),
    ("api_key", "api_key", "string"),
    ("feature", "feature", "string"),
    ("environment", "environment", "string"),
    ("status", "status", "string"),
    ("error_type", "error_type", "string"),
    ("http_status", "http_status", "number"),
    ("input_tokens", "input_tokens", "number"),
    ("output_tokens", "output_tokens", "number"),
    ("total_tokens", "total_tokens", "number"),
    ("customer_cost_usd", "cost_usd", "number"),
    ("latency_ms", "latency_ms", "number"),
    ("ttft_ms", "ttft_ms", "number"),
]
# Grafana lays out an Infinity frame's fields by name: this puts them back in the columns' order.
ORDER = {"id": "organize", "options": {"indexByName": {c[1]: i for i, c in enumerate(REQUEST_COLUMNS)}}}


def request_log(status: str = "") -> APIRequest:
    """The newest 1000 requests of the range (the API's largest page), every filter applied."""
    params = [("limit", "1000")]
    if status:  # the panel's own status (the recent errors): the status variable does not apply
        return APIRequest(
            "/api/v1/requests",
            "requests",
            REQUEST_COLUMNS,
            params=[*params, ("status", status)],
            filters=(*FILTERS, "user", "api_key"),
        )
    return APIRequest("/api/v1/requests", "requests", REQUEST_COLUMNS, params=params)


def spend_today(**options: Any) -> Any:
    """Today's customer spend (since 00:00 UTC), every filter applied, exact from the API."""
    return single(
        "Spend today",
        "currencyUSD",
        usage(
            "totals", [("customer_cost_usd", "customer_cost_usd", "number")], timed=False, params=[("range", "today")]
        ),
        "Since 00:00 UTC, every filter applied (exact, from the API).",
        **options,
    )


def details_link() -> dict[str, Any]:
    """The data link of a request id: the request dashboard, through the API datasource (never a browser link to
    the API, which asks for a token)."""
    return {
        "title": "Request details",
        "url": "/d/llmtally-request/llm-request?var-request=${__value.raw}&${api:queryparam}&${__url_time_range}",
    }


# --- the dashboards ------------------------------------------------------------------------------------------------


def overview() -> dashboard.Dashboard:
    d = new_dashboard(
        "llmtally-overview", "LLM overview", "Requests, errors, spend, active alerts, tokens, top models."
    )
    d = d.variables(variables()).annotation(alert_annotation())
    d = d.with_row(dashboard.Row("Totals"))
    d = d.with_panel(single("Requests", "short", total("requests"), EXACT))
    rate_refs, rate_steps = thresholds_from("error_rate_high", "error_rate_critical")
    d = d.with_panel(
        single(
            "Error rate",
            "percentunit",
            total("error_rate"),
            "Failed requests / requests (exact). Red from the error-rate alert threshold (alerts.thresholds"
            ".error_rate_high in llmtally.yaml, read from completion_alert_threshold).",
            extra=rate_refs,
            transformations=rate_steps,
        )
    )
    d = d.with_panel(single("Errors", "short", total("errors"), EXACT))
    d = d.with_panel(single("Spend", "currencyUSD", total("customer_cost_usd"), "Customer cost in the range. " + EXACT))
    d = d.with_panel(spend_today())
    d = d.with_panel(
        single(
            "Unpriced requests",
            "short",
            total("unpriced_requests"),
            "Requests with no price in the catalog: their cost counts as 0.",
            thresholds=((None, "green"), (1, "yellow")),
        )
    )
    d = d.with_panel(alert_list())
    d = d.with_row(dashboard.Row("Traffic"))
    d = d.with_panel(
        graph(
            "Requests per second: success and error",
            "reqps",
            [
                promql(or_zero(rate("completion_requests_success_total")), "success", "A"),
                promql(or_zero(rate("completion_requests_error_total")), "error", "B"),
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
    d = d.with_panel(
        bars(
            "Top models by requests",
            "short",
            grouped("model", "requests"),
            EXACT,
            width=12,
            rows="requests",
            transformations=top("requests"),
        )
    )
    d = d.with_panel(
        bars(
            "Top models by spend",
            "currencyUSD",
            grouped("model", "customer_cost_usd"),
            EXACT,
            width=12,
            rows="customer_cost_usd",
            transformations=top("customer_cost_usd"),
        )
    )
    return d


def cost() -> dashboard.Dashboard:
    d = new_dashboard(
        "llmtally-cost",
        "LLM cost and budgets",
        "Spend by provider, model, feature, department and environment; budgets and credits.",
    )
    budget = label_variable("budget", "label_values(completion_budget_limit_usd, budget)")
    d = d.variables([*variables(), budget]).annotation(alert_annotation())
    d = d.with_row(dashboard.Row("Spend"))
    d = d.with_panel(spend_today(width=4))
    d = d.with_panel(single("Spend in range", "currencyUSD", total("customer_cost_usd"), EXACT, width=4))
    d = d.with_panel(single("Provider cost in range", "currencyUSD", total("provider_cost_usd"), EXACT, width=4))
    for period, title in (("week", "this week"), ("month", "this month")):
        d = d.with_panel(
            single(
                f"Spend {title}",
                "currencyUSD",
                promql(spend(period), instant=True),
                "The budgets' calendar period from the store (completion_spend_usd): every provider, model and "
                "feature; the environment filter applies.",
                width=4,
            )
        )
    d = d.with_panel(single("Cached input tokens", "short", total("cached_tokens"), EXACT, width=4))
    d = d.with_panel(
        bars_of_interval(
            "Spend per interval by provider",
            "currencyUSD",
            [promql(per_interval("completion_cost_usd_total", "provider"), "{{provider}}")],
            "Customer cost in each interval (the bars add up to the range's spend).",
        )
    )
    d = d.with_panel(
        bars_of_interval(
            "Customer against provider cost per interval",
            "currencyUSD",
            [
                promql(per_interval("completion_cost_usd_total"), "customer", "A"),
                promql(per_interval("completion_provider_cost_usd_total"), "provider", "B"),
            ],
            "What you bill (customer, with the configured markups) against what the providers charge.",
        ).stacking(common.StackingConfig().mode(common_models.StackingMode.NONE).group("A"))
    )
    for label in ("model", "feature", "department", "environment"):
        d = d.with_panel(
            bars(
                f"Spend by {label}",
                "currencyUSD",
                grouped(label, "customer_cost_usd"),
                EXACT,
                width=6,
                rows="customer_cost_usd",
                transformations=top("customer_cost_usd", 20),
            )
        )
    d = d.with_row(dashboard.Row("Cache"))
    hit = (
        f"sum(increase(completion_tokens_cached_total{{{SELECT}}}[$__range]))"
        f" / sum(increase(completion_tokens_prompt_total{{{SELECT}}}[$__range]))"
    )
    d = d.with_panel(
        single(
            "Cache hit ratio",
            "percentunit",
            promql(hit, instant=True),
            "Share of input tokens read from the provider's prompt cache (billed at the cache-read price).",
            width=6,
            zero=False,
        )
    )
    d = d.with_panel(
        bars_of_interval(
            "Cached tokens per interval by model",
            "short",
            [promql(per_interval("completion_tokens_cached_total", "model"), "{{model}}")],
            "",
            width=18,
        )
    )
    d = d.with_row(dashboard.Row("Budgets and credits"))
    budget_refs, budget_steps = thresholds_from("budget_medium_ratio", "budget_high_ratio")
    d = d.with_panel(
        bars(
            "Budget utilisation",
            "percentunit",
            APIRequest(
                "/api/v1/budgets",
                "budgets",
                [("name", "budget", "string"), ("utilization", "utilization", "number")],
                filters=(),
                timed=False,
            ),
            "Spent / limit in the current period of every budget (exact, from the API); red from the budget alert "
            "thresholds (alerts.thresholds.budget_medium_ratio and budget_high_ratio).",
            width=8,
            maximum=1,
            rows="utilization",
            extra=budget_refs,
            transformations=budget_steps,
        )
    )
    d = d.with_panel(
        grid(
            "Budgets",
            [
                APIRequest(
                    "/api/v1/budgets",
                    "budgets",
                    [
                        ("name", "budget", "string"),
                        ("period", "period", "string"),
                        ("limit_usd", "limit_usd", "number"),
                        ("spent_usd", "spent_usd", "number"),
                        ("projected_usd", "projected_usd", "number"),
                        ("status", "status", "string"),
                    ],
                    filters=(),
                    timed=False,
                )
            ],
            "Limit, spent and linear projection at the period's end (exact, from the API).",
            width=8,
            height=8,
        )
    )
    credit_refs, credit_steps = thresholds_from("credit_low_usd")
    d = d.with_panel(
        bars(
            "Credit remaining",
            "currencyUSD",
            APIRequest(
                "/api/v1/budgets",
                "credits",
                [("provider", "provider", "string"), ("remaining_usd", "remaining_usd", "number")],
                filters=(),
                timed=False,
            ),
            "Configured balance minus the provider cost since the balance date (exact, from the API).",
            width=8,
            rows="remaining_usd",
            extra=credit_refs,
            transformations=credit_steps,
        )
    )
    sel = 'budget=~"$budget"'
    d = d.with_panel(
        graph(
            "Budget spent, limit and projection",
            "currencyUSD",
            [
                promql(store_gauge("completion_budget_spent_usd", "budget", sel), "{{budget}} spent", "A"),
                promql(store_gauge("completion_budget_limit_usd", "budget", sel), "{{budget}} limit", "B"),
                promql(store_gauge("completion_budget_projected_usd", "budget", sel), "{{budget}} projected", "C"),
            ],
            "Over time (the store-derived gauges; the budget variable applies).",
            width=24,
        )
    )
    return d


def performance() -> dashboard.Dashboard:
    d = new_dashboard(
        "llmtally-performance",
        "LLM performance",
        "Duration percentiles, time to first token, output tokens per second.",
    )
    d = d.variables(variables()).annotation(alert_annotation())
    latency_refs, latency_steps = thresholds_from("latency_p95_seconds")
    d = d.with_panel(
        graph(
            "Duration p50 / p95 / p99",
            "s",
            [
                *[
                    promql(quantile(q, "completion_duration_seconds"), f"p{int(q * 100)}", chr(65 + i))
                    for i, q in enumerate((0.5, 0.95, 0.99))
                ],
                *latency_refs,
            ],
            "Red line: the p95 latency alert threshold (alerts.thresholds.latency_p95_seconds).",
            transformations=latency_steps,
        )
    )
    ttft_refs, ttft_steps = thresholds_from("ttft_p95_seconds")
    d = d.with_panel(
        graph(
            "Time to first token p50 / p95 / p99",
            "s",
            [
                *[
                    promql(quantile(q, "completion_time_to_first_token_seconds"), f"p{int(q * 100)}", chr(65 + i))
                    for i, q in enumerate((0.5, 0.95, 0.99))
                ],
                *ttft_refs,
            ],
            "Streamed requests only. Red line: alerts.thresholds.ttft_p95_seconds.",
            transformations=ttft_steps,
        )
    )
    shared = (
        "histogram_quantile(0.95, sum by (le, provider, model) "
        f"(llmtally:completion_duration_seconds_bucket:increase15m{{{SELECT_NO_FEATURE}}}))"
    )
    latency_refs, latency_steps = thresholds_from("latency_p95_seconds")
    d = d.with_panel(
        graph(
            "Duration p95 by provider and model (15 min, as LLMLatencyP95High sees it)",
            "s",
            [promql(shared, "{{provider}} {{model}}"), *latency_refs],
            "From the recording rule the alert reads (llmtally:completion_duration_seconds_bucket:increase15m: "
            "environment, provider and model; the feature filter does not apply).",
            transformations=latency_steps,
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
    d = d.with_panel(
        bars(
            "Mean duration by provider",
            "ms",
            APIRequest(
                "/api/v1/health",
                "providers",
                [("provider", "provider", "string"), ("avg_latency_ms", "avg_latency_ms", "number")],
            ),
            EXACT,
            width=12,
            rows="avg_latency_ms",
        )
    )
    return d


def errors() -> dashboard.Dashboard:
    d = new_dashboard("llmtally-errors", "LLM errors", "Error rate, error types, failing providers and models.")
    d = d.variables(variables()).annotation(alert_annotation())
    rate_refs, rate_steps = thresholds_from("error_rate_high", "error_rate_critical")
    d = d.with_panel(
        single(
            "Error rate",
            "percentunit",
            total("error_rate"),
            "Failed / all requests in the range (exact). Red from alerts.thresholds.error_rate_high.",
            extra=rate_refs,
            transformations=rate_steps,
            width=8,
        )
    )
    d = d.with_panel(single("Errors", "short", total("errors"), EXACT, width=8))
    d = d.with_panel(single("Requests", "short", total("requests"), EXACT, width=8))
    rate_refs, rate_steps = thresholds_from("error_rate_high", "error_rate_critical")
    ratio = rule_ratio(
        "llmtally:completion_requests_error:increase5m", "llmtally:completion_requests:increase5m", "provider"
    )
    d = d.with_panel(
        graph(
            "Error rate by provider (5 min, as LLMErrorRate* see it)",
            "percentunit",
            [promql(ratio, "{{provider}}"), *rate_refs],
            "From the recording rules the error-rate alerts read; red lines: the alert thresholds.",
            transformations=rate_steps,
        )
    )
    d = d.with_panel(
        graph(
            "Errors per second by type",
            "reqps",
            [promql(or_zero(rate("completion_requests_error_total", "error_type")), "{{error_type}}")],
            "0 when nothing failed.",
            stack=True,
        )
    )
    errors_api = "/api/v1/errors"
    d = d.with_panel(
        bars(
            "Errors by type",
            "short",
            APIRequest(errors_api, "by_type", [("type", "type", "string"), ("count", "count", "number")]),
            EXACT,
            rows="count",
        )
    )
    d = d.with_panel(
        bars(
            "Errors by model",
            "short",
            APIRequest(errors_api, "by_model", [("model", "model", "string"), ("errors", "errors", "number")]),
            EXACT,
            rows="errors",
        )
    )
    by_provider_refs, by_provider_steps = thresholds_from("error_rate_high", "error_rate_critical")
    d = d.with_panel(
        bars(
            "Error rate by provider",
            "percentunit",
            APIRequest(
                errors_api, "by_provider", [("provider", "provider", "string"), ("error_rate", "error_rate", "number")]
            ),
            EXACT + " Providers with errors.",
            maximum=1,
            rows="error_rate",
            extra=by_provider_refs,
            transformations=by_provider_steps,
        )
    )
    d = d.with_panel(
        grid(
            "Recent errors",
            [request_log("error")],
            "The newest failed requests (1000 at most). Click a request for its details, events (retries) and "
            "error message.",
            transformations=[ORDER],
        )
        .override_by_name("request", [_links(details_link())])
        .override_by_name("cost_usd", [_unit("currencyUSD")])
    )
    return d


def capacity() -> dashboard.Dashboard:
    d = new_dashboard(
        "llmtally-capacity",
        "LLM capacity",
        "Provider rate limits: remaining against limit; requests and tokens per minute.",
    )
    d = d.variables(variables(api=False)).annotation(alert_annotation())
    by = "provider, model, kind"
    remaining = (
        f"{store_gauge('completion_ratelimit_remaining', by, SELECT_PROVIDER_MODEL)}"
        f" / {store_gauge('completion_ratelimit_limit', by, SELECT_PROVIDER_MODEL)}"
    )
    refs, ratio_steps = thresholds_from("ratelimit_remaining_ratio")
    d = d.with_panel(
        bars(
            "Rate limit remaining (share of the limit)",
            "percentunit",
            promql(remaining, "{{provider}} {{model}} {{kind}}", instant=True),
            "The last rate-limit headers each provider sent; the line at alerts.thresholds.ratelimit_remaining_ratio "
            "(the alert fires below it).",
            width=24,
            maximum=1,
            extra=refs,
            transformations=ratio_steps,
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


def audit() -> dashboard.Dashboard:
    d = new_dashboard(
        "llmtally-audit",
        "LLM audit log",
        "The request log from llmtally's API (any store): who called which model, tokens, cost.",
    )
    d = d.variables(variables())
    d = d.with_panel(single("Requests", "short", total("requests"), EXACT, width=6))
    d = d.with_panel(single("Errors", "short", total("errors"), EXACT, width=6))
    d = d.with_panel(single("Spend", "currencyUSD", total("customer_cost_usd"), EXACT, width=6))
    d = d.with_panel(single("Tokens", "short", total("total_tokens"), EXACT, width=6))
    log = grid(
        "Recent requests",
        [request_log()],
        "Newest first (1000 at most), every filter applied. Click a request for every stored field, its events "
        "(retries, re-pricing) and payloads.",
        transformations=[ORDER],
        height=12,
    )
    log = log.override_by_name("request", [_links(details_link())]).override_by_name("cost_usd", [_unit("currencyUSD")])
    log = log.override_by_name("latency_ms", [_unit("ms")]).override_by_name("ttft_ms", [_unit("ms")])
    d = d.with_panel(log)
    users = usage(
        "rows",
        [
            ("user", "user", "string"),
            ("requests", "requests", "number"),
            ("errors", "errors", "number"),
            ("total_tokens", "tokens", "number"),
            ("customer_cost_usd", "cost_usd", "number"),
        ],
        "user",
    )
    d = d.with_panel(
        grid("Usage by user", [users], EXACT, width=12, transformations=top("cost_usd", 1000)).override_by_name(
            "cost_usd", [_unit("currencyUSD")]
        )
    )
    drivers = APIRequest(
        "/api/v1/insights",
        "top_cost_drivers.api_key",
        [
            ("api_key", "api_key", "string"),
            ("cost_usd", "cost_usd", "number"),
            ("requests", "requests", "number"),
        ],
    )
    d = d.with_panel(
        grid(
            "Top API keys by spend", [drivers], "The insights' top cost drivers (five). " + EXACT, width=12
        ).override_by_name("cost_usd", [_unit("currencyUSD")])
    )
    return d


def request() -> dashboard.Dashboard:
    """One request's details (the audit dashboard's request links lead here), through the API datasource."""
    d = new_dashboard("llmtally-request", "LLM request", "One request: every stored field, its events and rate limits.")
    request_id = dashboard.TextBoxVariable("request").label("Request id")
    d = d.variables([datasource_variable("api", "llmtally API", INFINITY_TYPE), request_id])
    path = "/api/v1/requests/${request:percentencode}"
    one = APIRequest(path, "", [], filters=(), timed=False)
    d = d.with_panel(grid("Request", [one], "Every stored field of the request (from the API).", height=6))
    for title, root, width in (("Events", "events", 12), ("Rate limits", "ratelimits", 12)):
        d = d.with_panel(
            grid(
                title,
                [APIRequest(path, root, [], filters=(), timed=False)],
                "Retries, re-pricing and the other events of the request."
                if root == "events"
                else "The rate-limit headers the provider sent.",
                width=width,
                height=8,
            )
        )
    return d


def _unit(unit: str) -> Any:
    from grafana_foundation_sdk.models.dashboard import DynamicConfigValue

    return DynamicConfigValue(id_val="unit", value=unit)


def _links(link: dict[str, Any]) -> Any:
    from grafana_foundation_sdk.models.dashboard import DynamicConfigValue

    return DynamicConfigValue(id_val="links", value=[link])


DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "overview": overview,
    "cost": cost,
    "performance": performance,
    "errors": errors,
    "capacity": capacity,
    "audit": audit,
    "request": request,
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
