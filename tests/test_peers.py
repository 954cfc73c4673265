"""Peer instrumentations alone and beside llmtally, their spans exported one per export request
(`OTEL_BSP_MAX_EXPORT_BATCH_SIZE=1`) or batched: the receiver stores one record per LLM call, with the usage the
provider answered.

The official GenAI instrumentations (OpenAI, Anthropic, google-genai), OpenLLMetry's (OpenAI, Anthropic) and the
Anthropic SDK's own spans (on by default) run in `tests/peer_app.py`, one app process per run, each run under its own
service name into one receiver; every run's records are then compared call by call with what the provider answered.
OpenLIT is not among them: it does not install beside openai >= 3 and anthropic >= 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from llmtally.exporter.normalise.record import Record
from llmtally.exporter.store import open_store
from peer_app import CALLS
from receiver import Receiver, metric_sum

OFFICIAL = ("otel-openai", "otel-anthropic", "otel-google-genai")
OPENLLMETRY = ("openllmetry-openai", "openllmetry-anthropic")
# run -> (instrumentations, spans and audit events one per export request)
RUNS: dict[str, tuple[tuple[str, ...], bool]] = {
    "openllmetry-alone-batch-1": (OPENLLMETRY, True),
    "openllmetry-llmtally-batch-1": ((*OPENLLMETRY, "llmtally"), True),
    "official-llmtally-batch-1": ((*OFFICIAL, "llmtally"), True),
    "all-alone-batch-1": ((*OFFICIAL, *OPENLLMETRY), True),
    "all-alone-batched": ((*OFFICIAL, *OPENLLMETRY), False),
    "all-llmtally-batched": ((*OFFICIAL, *OPENLLMETRY, "llmtally"), False),
}
# The APIs (peer_app's `api`) whose calls each instrumentation records, and the `source` of its records.
SEES = {
    "llmtally": ({"openai", "anthropic", "gemini"}, "llmtally"),
    "otel-openai": ({"openai"}, "otel-genai"),
    "otel-anthropic": ({"anthropic"}, "otel-genai"),
    "otel-google-genai": ({"gemini"}, "otel-genai"),
    "openllmetry-openai": ({"openai"}, "openllmetry"),
    "openllmetry-anthropic": ({"anthropic"}, "openllmetry"),
    "anthropic-sdk": ({"anthropic"}, "anthropic"),  # on by default; llmtally turns it off when it hooks Anthropic
}
ALL_TIME = (0, 2**63 - 1)


def _run_app(receiver: Receiver, workdir: Path, name: str) -> list[dict[str, Any]]:
    instrumentations, one_per_export = RUNS[name]
    answers = workdir / f"{name}.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMTALLY_", "ANTHROPIC_"))}
    env |= {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint,
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": name,
        "PEER_APP_INSTRUMENTATIONS": ",".join(instrumentations),
        "PEER_APP_ANSWERS": str(answers),
    }
    if one_per_export:
        env |= {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "1"}
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    app = Path(__file__).with_name("peer_app.py")
    run = subprocess.run(
        [str(launcher), sys.executable, str(app)], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in answers.read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every run into one SQLite receiver (two apps at a time): each run's answers and stored records, the store's
    usage totals and the receiver's /metrics."""
    workdir = tmp_path_factory.mktemp("peers")
    url = f"sqlite:///{workdir}/audit.db"
    receiver = Receiver(workdir, url).start()
    try:
        with ThreadPoolExecutor(2) as pool:
            answers = dict(zip(RUNS, pool.map(lambda name: _run_app(receiver, workdir, name), RUNS), strict=True))
        exposition = receiver.metrics()
    finally:
        assert receiver.stop() == 0
    with open_store(url) as store:
        records = store.records_between(*ALL_TIME, limit=1000)
        (totals,) = store.usage([], *ALL_TIME)
    by_run: dict[str, list[Record]] = {name: [] for name in RUNS}
    for record in records:
        by_run[str(record.service)].append(record)
    return {"answers": answers, "records": by_run, "all": records, "totals": totals, "metrics": exposition}


def _seen_by(name: str) -> dict[str, set[str]]:
    """API -> the sources of the instrumentations of run `name` that record its calls."""
    instrumentations = set(RUNS[name][0])
    if "llmtally" not in instrumentations:
        instrumentations.add("anthropic-sdk")
    sources: dict[str, set[str]] = {}
    for instrumentation in instrumentations:
        apis, source = SEES[instrumentation]
        for api in apis:
            sources.setdefault(api, set()).add(source)
    return sources


@pytest.mark.parametrize("name", RUNS)
def test_one_record_per_call_with_the_providers_usage(runs: dict[str, Any], name: str):
    answers: list[dict[str, Any]] = runs["answers"][name]
    records: list[Record] = list(runs["records"][name])
    assert len(answers) == CALLS
    seen_by = _seen_by(name)
    expected = [a for a in answers if a["api"] in seen_by]
    assert len(records) == len(expected), [(r.source, r.request_model, r.response_id, r.status) for r in records]
    for answer in expected:
        if answer["failed"]:
            matches = [r for r in records if r.status == "error" and r.request_model == answer["model"]]
        elif answer["response_id"] is None:
            matches = [r for r in records if r.request_model == answer["model"] and r.status == "success"]
        else:
            matches = [r for r in records if r.response_id == answer["response_id"]]
        assert matches, answer
        record = matches[0]
        records.remove(record)
        sources = seen_by[answer["api"]]
        assert set(record.seen_by or [record.source]) == sources, (answer, record.seen_by, record.source)
        if "llmtally" in sources:
            assert record.source == "llmtally"
        if answer["failed"]:
            assert record.error_type is not None and (record.input_tokens, record.output_tokens) == (0, 0)
        else:
            assert record.status == "success" and record.usage_source == "provider", record
            assert (record.input_tokens, record.output_tokens) == (answer["input_tokens"], answer["output_tokens"])
    assert records == []


def test_rollups_and_metrics_count_each_call_once(runs: dict[str, Any]):
    records: list[Record] = runs["all"]
    calls = sum(len([a for a in runs["answers"][n] if a["api"] in _seen_by(n)]) for n in RUNS)
    assert len(records) == calls
    totals = runs["totals"]
    assert totals["requests"] == calls
    failed = sum(a["failed"] for n in RUNS for a in runs["answers"][n] if a["api"] in _seen_by(n))
    assert totals["errors"] == sum(r.status == "error" for r in records) == failed
    assert totals["input_tokens"] == sum(r.input_tokens for r in records)
    assert totals["output_tokens"] == sum(r.output_tokens for r in records)
    exposition = runs["metrics"]
    # Counted once each, on first store; a record replaced by a richer one is not counted again.
    assert metric_sum(exposition, "completion_requests_total") == calls
    assert metric_sum(exposition, "completion_requests_error_total") == totals["errors"]
    assert metric_sum(exposition, "completion_tokens_prompt_total") == totals["input_tokens"]
    by_source = Counter(s for r in records for s in (r.seen_by or [r.source]))
    assert by_source["otel-genai"] and by_source["openllmetry"] and by_source["anthropic"]


@pytest.mark.parametrize("name", [n for n, (names, _) in RUNS.items() if "llmtally" not in names])
def test_peers_request_parameters_are_stored(runs: dict[str, Any], name: str):
    """The app's Messages calls ask for max_tokens=256: the peers' spans say so (gen_ai.request.max_tokens), and the
    stored record keeps it, whichever peer's record was kept."""
    claude = [r for r in runs["records"][name] if r.request_model.startswith("claude")]
    assert claude
    assert all(r.params.get("max_tokens") == 256 for r in claude), [(r.source, r.params) for r in claude]
