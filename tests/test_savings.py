"""Savings advice in /api/v1/insights and `llmtally insights`, on SQLite and PostgreSQL: every estimate checked
against genai-prices' own `calc_price` on the usage written (a cheaper model of the same provider and kind, prompt
caching, the batch tier for non-streamed requests), and on real instrumented traffic (the example app's requests,
streamed and not)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import httpx
import pytest
from genai_prices import data_snapshot

from alerting_stack import wait_for
from conftest import fresh_store
from instrumented_app import APP_CALLS, run_instrumented_app
from llmtally.cli import main
from llmtally.demo.fake_provider import FakeProvider
from llmtally.exporter.normalise.record import Record
from llmtally.exporter.price import Pricer
from llmtally.exporter.store import open_store
from receiver import Receiver

HOUR = 3_600_000_000_000
NOW = time.time_ns()
REQUESTS, STREAMED = 40, 10  # gpt-4o chat: 40 requests of 3,000 input and 400 output tokens, 10 of them streamed
INPUT, OUTPUT = 3000, 400


def chat(n: int, **fields: Any) -> Record:
    values: dict[str, Any] = {
        "record_id": f"{n:016x}",
        "start_time_ns": NOW - 2 * HOUR - n * 60 * 10**9,
        "end_time_ns": NOW - 2 * HOUR - n * 60 * 10**9 + 10**9,
        "provider": "openai",
        "operation": "chat",
        "request_model": "gpt-4o",
        "response_model": "gpt-4o-2024-08-06",
        "status": "success",
        "duration_s": 1.0,
        "stream": n < STREAMED,
        "input_tokens": INPUT,
        "output_tokens": OUTPUT,
        "total_tokens": INPUT + OUTPUT,
        "user_id": "alice",
    }
    values.update(fields)
    record = Record(**values)
    Pricer().price(record)  # as the receiver prices it
    return record


# Embeddings (no cheaper model is offered unless one is cheaper), and a self-hosted model (not in the catalog).
RECORDS = [
    *(chat(n) for n in range(REQUESTS)),
    *(
        chat(
            100 + n,
            operation="embeddings",
            request_model="text-embedding-3-large",
            response_model="text-embedding-3-large",
            output_tokens=0,
            total_tokens=500,
            input_tokens=500,
            stream=False,
        )
        for n in range(5)
    ),
    *(chat(200 + n, provider="ollama", request_model="llama3.2", response_model="llama3.2") for n in range(3)),
]


def catalog_cost(model: str, usage: dict[str, int], **context: str) -> Decimal:
    price = genai_prices.calc_price(
        genai_prices.Usage(**usage),
        model,
        provider_id="openai",
        genai_request_timestamp=datetime.now(UTC),
        price_context=context or None,  # type: ignore[arg-type]
    )
    return price.total_price


@dataclass
class Served:
    url: str
    store: str
    workdir: Path

    def json(self, path: str, **params: Any) -> Any:
        answer = httpx.get(f"{self.url}{path}", params=params, timeout=60)
        assert answer.status_code == 200, (path, params, answer.text)
        return answer.json()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, provider_server: FakeProvider
) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp(f"savings-{request.param}")
    url, drop = fresh_store(request, workdir)
    with open_store(url) as store:
        assert len(store.write(RECORDS)) == len(RECORDS)
    receiver = Receiver(workdir, url).start()
    try:
        provider_server.reset()
        run_instrumented_app(provider_server.base_url, workdir, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint)
        served = Served(receiver.http_url, url, workdir)
        total = len(RECORDS) + APP_CALLS
        wait_for(
            lambda: served.json("/api/v1/usage", range="24h")["totals"]["requests"] == total,
            30,
            lambda: f"{total} records stored",
        )
        yield served
    finally:
        assert receiver.stop() == 0
        drop()


def items(report: dict[str, Any], kind: str, model: str) -> list[dict[str, Any]]:
    return [i for i in report["savings"] if i["kind"] == kind and i["model"] == model]


def test_savings_estimates_equal_the_catalog(served: Served) -> None:
    report = served.json(
        "/api/v1/insights", start="2020-01-01", end=datetime.fromtimestamp((NOW - HOUR) / 1e9, UTC).isoformat()
    )
    assert report["requests"] == len(RECORDS)
    usage = {"input_tokens": INPUT, "output_tokens": OUTPUT}
    spent = sum(r.provider_cost_nusd or 0 for r in RECORDS if r.request_model == "gpt-4o")
    assert spent == REQUESTS * catalog_cost("gpt-4o", usage).scaleb(9)

    (cheaper,) = items(report, "cheaper_model", "gpt-4o")
    suggested = cheaper["suggested_model"]
    estimate = REQUESTS * catalog_cost(suggested, usage)
    assert cheaper["evidence"]["estimated_cost_usd"] == pytest.approx(float(estimate), abs=1e-9)
    assert cheaper["estimated_saving_usd"] == pytest.approx(float(Decimal(spent).scaleb(-9) - estimate), abs=1e-9)
    assert cheaper["estimated_saving_usd"] > 0 and "embed" not in suggested
    for other in cheaper["alternatives"]:  # the next cheapest, each dearer than the suggestion
        assert REQUESTS * catalog_cost(other, usage) >= estimate
    _, info = data_snapshot.get_snapshot().find_provider_model(suggested, None, "openai", None)
    assert info.context_window and info.context_window >= 128_000 and not info.deprecated
    evidence = cheaper["evidence"]
    assert (evidence["requests"], evidence["input_tokens_per_request"], evidence["output_tokens_per_request"]) == (
        REQUESTS,
        INPUT,
        OUTPUT,
    )
    assert cheaper["source"].startswith("genai-prices") and suggested in cheaper["source"]
    assert suggested in cheaper["advice"] and "gpt-4o" in cheaper["advice"]

    # Long inputs (3,000 tokens), 40 requests, nothing read from the cache: caching, priced at gpt-4o's cache reads.
    (caching,) = items(report, "prompt_caching", "gpt-4o")
    _, gpt4o = data_snapshot.get_snapshot().find_provider_model("gpt-4o", None, "openai", None)
    prices = gpt4o.get_prices(datetime.now(UTC))
    assert prices.cache_read_mtok is not None and prices.input_mtok is not None
    want = Decimal(REQUESTS * INPUT) / 2 * (prices.input_mtok - prices.cache_read_mtok) / 1_000_000
    assert caching["estimated_saving_usd"] == pytest.approx(float(want), abs=1e-9) and want > 0
    assert caching["evidence"]["cached_share"] == 0 and caching["evidence"]["input_tokens_per_request"] == INPUT
    assert Decimal(caching["evidence"]["cache_read_per_mtok_usd"]) == prices.cache_read_mtok

    # 30 of the 40 were not streamed: the batch tier at the catalog's batch prices.
    (batch,) = items(report, "batch", "gpt-4o")
    per_request = catalog_cost("gpt-4o", usage) - catalog_cost("gpt-4o", usage, processing="batch")
    assert per_request > 0
    assert batch["estimated_saving_usd"] == pytest.approx(float(per_request * (REQUESTS - STREAMED)), abs=1e-9)
    assert (batch["evidence"]["requests"], batch["evidence"]["non_streamed_requests"]) == (
        REQUESTS,
        REQUESTS - STREAMED,
    )
    assert "batch" in batch["source"]

    # Not in the catalog (self-hosted): no advice. Savings come largest first, and are the recommendations.
    assert not [i for i in report["savings"] if i["provider"] == "ollama"]
    savings = [i["estimated_saving_usd"] for i in report["savings"]]
    assert savings == sorted(savings, reverse=True)
    assert report["recommendations"] == [i["advice"] for i in report["savings"]]


def test_no_advice_without_evidence(served: Served) -> None:
    # Only the streamed requests (the newest ten minutes of gpt-4o): no batch advice, the rest still there.
    newest = NOW - 2 * HOUR
    start = datetime.fromtimestamp((newest - (STREAMED - 0.5) * 60 * 10**9) / 1e9, UTC).isoformat()
    end = datetime.fromtimestamp((newest + 10**9) / 1e9, UTC).isoformat()
    report = served.json("/api/v1/insights", start=start, end=end)
    assert report["requests"] == STREAMED
    assert {i["kind"] for i in report["savings"]} == {"cheaper_model", "prompt_caching"}
    # Short inputs (embeddings of 500 tokens): no caching; a cheaper embedding model, never a chat one.
    report = served.json("/api/v1/insights", start="2020-01-01", operation="embeddings")
    assert [i["kind"] for i in report["savings"]] == ["cheaper_model"]
    assert "embed" in report["savings"][0]["suggested_model"]
    assert all("embed" in m for m in report["savings"][0]["alternatives"])
    # Nothing matches: no advice at all.
    assert served.json("/api/v1/insights", start="2020-01-01", user="nobody")["savings"] == []


def test_savings_of_real_traffic(served: Served) -> None:
    """The example app's calls (streamed and not, several providers): each batch item's counts are those of the
    request log, each cheaper model's requests those of its model."""
    report = served.json("/api/v1/insights", range="1h")
    log = served.json("/api/v1/requests", range="1h", limit=1000)["requests"]
    assert len(log) == APP_CALLS
    batch = [i for i in report["savings"] if i["kind"] == "batch"]
    assert batch, report["savings"]
    for item in batch:
        mine = [r for r in log if r["provider"] == item["provider"] and r["model"] == item["model"]]
        assert item["evidence"]["requests"] == len(mine)
        assert item["evidence"]["non_streamed_requests"] == sum(not r["stream"] for r in mine) > 0
    streamed_only = {(r["provider"], r["model"]) for r in log if r["stream"]} - {
        (r["provider"], r["model"]) for r in log if not r["stream"]
    }
    assert not [i for i in batch if (i["provider"], i["model"]) in streamed_only]
    for item in report["savings"]:
        assert item["estimated_saving_usd"] > 0 and item["source"].startswith("genai-prices")
        mine = [r for r in log if r["provider"] == item["provider"] and r["model"] == item["model"]]
        assert item["evidence"]["requests"] == len(mine)


def test_insights_command_shows_the_advice(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    end = datetime.fromtimestamp((NOW - HOUR) / 1e9, UTC).isoformat()
    assert main(["insights", "--store", served.store, "--start", "2020-01-01", "--end", end, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    api = served.json("/api/v1/insights", start="2020-01-01", end=end)
    assert report["savings"] == api["savings"]
    assert main(["insights", "--store", served.store, "--start", "2020-01-01", "--end", end]) == 0
    out = capsys.readouterr().out
    assert "Savings advice" in out and "prompt_caching" in out and "batch" in out
    assert report["savings"][0]["advice"][:40] in out.replace("\n", " ")


def test_batch_estimate_from_the_newest_requests(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the sample of newest requests read for how requests were sent, the non-streamed count is the sample's
    share of the model's requests, and the evidence says so (insights stay one bounded read on a large store)."""
    from llmtally.exporter.api import savings
    from llmtally.exporter.api.params import Filters, TimeRange

    span = TimeRange("custom", NOW - 3 * HOUR, NOW)
    monkeypatch.setattr(savings, "STREAM_SAMPLE", 2 * STREAMED)  # the newest 20: 10 streamed, 10 not
    with open_store(served.store) as store:
        advice = savings.savings(store, span, Filters({"operation": "chat"}), Pricer())
    (batch,) = [i for i in advice if i["kind"] == "batch" and i["model"] == "gpt-4o"]
    assert batch["evidence"]["non_streamed_requests"] == REQUESTS // 2  # half of 40, from the sample's share
    assert batch["evidence"]["non_streamed_estimated_from_newest"] == 2 * STREAMED
    monkeypatch.setattr(savings, "STREAM_SAMPLE", 10_000)  # every request read: exact, no estimate named
    with open_store(served.store) as store:
        advice = savings.savings(store, span, Filters({"operation": "chat"}), Pricer())
    (batch,) = [i for i in advice if i["kind"] == "batch" and i["model"] == "gpt-4o"]
    assert batch["evidence"]["non_streamed_requests"] == REQUESTS - STREAMED
    assert "non_streamed_estimated_from_newest" not in batch["evidence"]
