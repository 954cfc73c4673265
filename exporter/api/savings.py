"""Savings advice from the account's own usage, priced with the genai-prices catalog: for each top cost driver (a
provider's model), a cheaper model of the same provider and kind on the same token mix, prompt caching where long
inputs are rarely read from the cache, and the batch tier for requests that were not streamed. Each item carries its
USD estimate (provider cost, before markup and fees) and the numbers it rests on."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ..price import Pricer
from ..price.alternatives import Alternatives, cost_usd, kind_of_operation, per_mtok
from ..price.catalog import CatalogPrice
from ..price.rate import Rate, Usage
from ..store import Store, UsageRow
from .params import Filters, QueryError, TimeRange

TOP_DRIVERS = 5  # the costliest (provider, operation, model) groups advised on
CACHE_MIN_INPUT_TOKENS = 1024  # mean input tokens per request from which a prompt can be cached (OpenAI, Anthropic)
CACHE_MIN_REQUESTS = 10  # requests of the model in the period: inputs that can repeat
CACHE_LOW_SHARE = 0.25  # cached share of the input below which caching is advised
CACHEABLE_SHARE = Decimal("0.5")  # assumed: half of the uncached input is a prefix that repeats
STREAM_SAMPLE = 10_000  # the newest requests read for how requests are sent (the rollups do not keep it)
_GROUPS = ["provider", "operation", "request_model"]


def savings(
    store: Store,
    span: TimeRange,
    filters: Filters,
    pricer: Pricer,
    rows: Sequence[UsageRow] | None = None,
    top: int = TOP_DRIVERS,
) -> list[dict[str, Any]]:
    """The advice items over the range, largest estimated saving first; `rows`: the range's usage by provider,
    operation and requested model when already read."""
    if rows is None:
        rows = filters.usage(store, _GROUPS, span.start_ns, span.end_ns)
    drivers = sorted(
        (r for r in rows if int(r["provider_cost_nusd"]) > 0),
        key=lambda r: (-int(r["provider_cost_nusd"]), str(r["provider"]), str(r["request_model"])),
    )[:top]
    catalog = Alternatives(span.end_ns)
    streams: dict[tuple[str, str], tuple[int, int]] | None = None  # read once, when a driver is priced
    items: list[dict[str, Any]] = []
    for row in drivers:
        provider, model, operation = str(row["provider"]), str(row["request_model"]), str(row["operation"])
        kind = kind_of_operation(operation)
        found = catalog.price(provider, model)
        info = pricer.lookup(provider, model)
        if kind is None or found is None or info is None or info.source != found[2].source:
            continue  # not chat or embeddings, not in the catalog, or priced by an override
        if streams is None:
            streams = _non_streamed(store, span, filters)
        usage = _mean_usage(row)
        scope = {"provider": provider, "model": model, "operation": operation}
        items += _cheaper(catalog, found, kind, row, usage, scope)
        items += _caching(catalog, found[2], row, scope)
        items += _batch(catalog, found[2], usage, streams.get((provider, model)), int(row["requests"]), scope)
    return sorted(items, key=lambda i: -i["estimated_saving_usd"])


def _usd(value: Decimal) -> float:
    return round(float(value), 9)


def _mean_usage(row: UsageRow) -> Usage:
    n = int(row["requests"])
    mean = [int(row[k]) // n for k in ("input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens")]
    return (mean[0], mean[1], mean[2], mean[3], int(row["reasoning_tokens"]) // n, 0, 0, 0, 0)


def _prices(rate: Rate) -> dict[str, str | None]:
    price = rate.model_price
    values = {
        "input": per_mtok(price.input_mtok),
        "output": per_mtok(price.output_mtok),
        "cache_read": per_mtok(price.cache_read_mtok),
    }
    return {k: None if v is None else str(v) for k, v in values.items()}


def _mix(row: UsageRow, usage: Usage) -> dict[str, Any]:
    return {
        "requests": int(row["requests"]),
        "input_tokens_per_request": usage[0],
        "cached_tokens_per_request": usage[1],
        "output_tokens_per_request": usage[3],
        "provider_cost_usd": _usd(Decimal(int(row["provider_cost_nusd"])).scaleb(-9)),
    }


def _cheaper(
    catalog: Alternatives,
    found: tuple[Any, Any, CatalogPrice],
    kind: str,
    row: UsageRow,
    usage: Usage,
    scope: dict[str, str],
) -> list[dict[str, Any]]:
    """The cheapest model of the provider's catalog for this kind and token mix (with a context window at least as
    large as the current model's), with what the period's requests would have cost on it."""
    provider, model, current = found
    window = model.context_window or 0
    requests = int(row["requests"])
    spent = Decimal(int(row["provider_cost_nusd"])).scaleb(-9)
    ranked = []
    for candidate in catalog.others(provider, model, kind):
        info = next(m for m in provider.models if m.id == candidate.model_id)
        if not info.context_window or info.context_window < window:
            continue
        each = cost_usd(catalog.rate(candidate), usage)
        if each is not None and each * requests < spent:
            ranked.append((each * requests, candidate.model_id, candidate))
    if not ranked:
        return []
    ranked.sort(key=lambda item: (item[0], item[1]))
    estimate, name, best = ranked[0]
    saving = spent - estimate
    return [
        {
            "kind": "cheaper_model",
            **scope,
            "suggested_model": name,
            "alternatives": [m for _, m, _ in ranked[1:3]],
            "estimated_saving_usd": _usd(saving),
            "evidence": {
                **_mix(row, usage),
                "estimated_cost_usd": _usd(estimate),
                "current_per_mtok_usd": _prices(catalog.rate(current)),
                "suggested_per_mtok_usd": _prices(catalog.rate(best)),
            },
            "source": best.source,
            "advice": (
                f"{scope['provider']} {scope['model']}: its {requests:,} requests (mean {usage[0]:,} input, "
                f"{usage[3]:,} output tokens) would have cost ${_usd(estimate):,.6f} on {name} instead of "
                f"${_usd(spent):,.6f}; check that {name} does the job well enough"
            ),
        }
    ]


def _caching(
    catalog: Alternatives, current: CatalogPrice, row: UsageRow, scope: dict[str, str]
) -> list[dict[str, Any]]:
    """Prompt caching, when long inputs are sent often and rarely read from the cache, and the provider prices
    cache reads below input."""
    requests, tokens = int(row["requests"]), int(row["input_tokens"])
    cached, written = int(row["cached_tokens"]), int(row["cache_write_tokens"])
    price = catalog.rate(current).model_price
    input_price, read_price = per_mtok(price.input_mtok), per_mtok(price.cache_read_mtok)
    share = cached / tokens if tokens else 0.0
    long_inputs = requests >= CACHE_MIN_REQUESTS and tokens / requests >= CACHE_MIN_INPUT_TOKENS
    if not long_inputs or share >= CACHE_LOW_SHARE or input_price is None or read_price is None:
        return []
    if read_price >= input_price:
        return []
    cacheable = Decimal(tokens - cached - written) * CACHEABLE_SHARE
    saving = cacheable * (input_price - read_price) / 1_000_000
    if saving <= 0:
        return []
    return [
        {
            "kind": "prompt_caching",
            **scope,
            "estimated_saving_usd": _usd(saving),
            "evidence": {
                "requests": requests,
                "input_tokens_per_request": tokens // requests,
                "cached_share": round(share, 6),
                "input_per_mtok_usd": str(input_price),
                "cache_read_per_mtok_usd": str(read_price),
                "assumed_cacheable_share": float(CACHEABLE_SHARE),
            },
            "source": current.source,
            "advice": (
                f"{scope['provider']} {scope['model']}: {requests:,} requests of {tokens // requests:,} input tokens "
                f"on average, {share:.0%} read from the cache; putting the repeated part first (a stable system "
                f"prompt, tools, documents) so the provider caches it bills cache reads at ${read_price}/M instead of "
                f"${input_price}/M: about ${_usd(saving):,.6f} if half of the uncached input repeats"
            ),
        }
    ]


def _batch(
    catalog: Alternatives,
    current: CatalogPrice,
    usage: Usage,
    mix: tuple[int, int] | None,
    requests: int,
    scope: dict[str, str],
) -> list[dict[str, Any]]:
    """The batch tier for the requests that were not streamed, when the catalog lists a batch price. `mix`: the
    requests and non-streamed requests among the newest read (all of the period's `requests`, or a sample of them:
    then the non-streamed ones are estimated from its share)."""
    if mix is None or not mix[1]:
        return []
    sampled, sampled_non_streamed = mix
    exact = sampled >= requests
    batch = catalog.batch_rate(current)
    if batch is None:
        return []
    standard = catalog.rate(current)
    now, later = cost_usd(standard, usage), cost_usd(batch, usage)
    if now is None or later is None or later >= now:
        return []
    non_streamed = sampled_non_streamed if exact else round(requests * sampled_non_streamed / sampled)
    saving = (now - later) * non_streamed
    return [
        {
            "kind": "batch",
            **scope,
            "estimated_saving_usd": _usd(saving),
            "evidence": {
                "requests": requests,
                "non_streamed_requests": non_streamed,
                "non_streamed_share": round(non_streamed / requests, 6),
                **({} if exact else {"non_streamed_estimated_from_newest": sampled}),
                "input_tokens_per_request": usage[0],
                "output_tokens_per_request": usage[3],
                "standard_per_mtok_usd": _prices(standard),
                "batch_per_mtok_usd": _prices(batch),
            },
            "source": f"{current.source}, processing=batch price variant",
            "advice": (
                f"{scope['provider']} {scope['model']}: {non_streamed:,} of {requests:,} requests were not streamed; "
                f"those that need no answer within seconds cost less through the batch API "
                f"(${_usd(saving):,.6f} less for all of them at the catalog's batch prices)"
            ),
        }
    ]


def _non_streamed(store: Store, span: TimeRange, filters: Filters) -> dict[tuple[str, str], tuple[int, int]]:
    """(requests, non-streamed requests) per (provider, requested model), from the records; empty when the filters
    select too many combinations of values to read them."""
    try:
        selections = filters.selections(span)
    except QueryError:
        return {}
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for selection in selections:
        for provider, model, requests, non_streamed in store.stream_mix(selection, STREAM_SAMPLE):
            before = out.get((provider, model), (0, 0))
            out[(provider, model)] = (before[0] + requests, before[1] + non_streamed)
    return out
