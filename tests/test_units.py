"""Billed units other than tokens (`Record.units`, from `llmtally.usage.unit.*`): priced exactly as genai-prices'
own `calc_price` on the same usage (the real bundled catalog, no mocks), per-unit prices of `pricing.overrides`,
stored and repriced on SQLite and on a real PostgreSQL server, and end to end through a real `llmtally serve`."""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import httpx
import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ModelPrice
from opentelemetry.exporter.otlp.proto.common._internal import _encode_key_value
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from llmtally.exporter.maintenance.reprice import reprice
from llmtally.exporter.normalise.record import Record
from llmtally.exporter.normalise.units import DURATIONS, FIELD_KEYS, REGISTRY, UNIT_KEYS
from llmtally.exporter.price import UNPRICED, Pricer, PricingConfig, PricingConfigError
from llmtally.exporter.price.rate import Rate, to_nusd
from llmtally.exporter.store import Store, open_store
from receiver import Receiver

VERSION = genai_prices.__version__
NOV_2026 = datetime(2026, 11, 2, 18, 0, tzinfo=UTC)
DALL_E = {"overrides": [{"model": "dall-e-3", "provider": "openai", "per_image_usd": "0.04"}]}


def ns(when: datetime) -> int:
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000


def record(
    provider: str,
    model: str,
    units: dict[str, int | float] | None = None,
    *,
    when: datetime = NOV_2026,
    record_id: str = "r1",
    **fields: Any,
) -> Record:
    return Record(
        record_id=record_id,
        start_time_ns=ns(when),
        end_time_ns=ns(when) + 10**9,
        provider=provider,
        request_model=model,
        usage_source="provider",
        units=units or {},
        **fields,
    )


def usage_of(rec: Record) -> dict[str, int | float]:
    """The record's usage under genai-prices' keys: every token field, then its units (but `images`)."""
    fields = (
        rec.input_tokens,
        rec.cached_tokens,
        rec.cache_write_tokens,
        rec.output_tokens,
        rec.reasoning_tokens,
        rec.cache_write_1h_tokens,
        rec.input_audio_tokens,
        rec.output_audio_tokens,
        rec.web_searches,
    )
    return {**dict(zip(FIELD_KEYS, fields, strict=True)), **{k: v for k, v in rec.units.items() if k != "images"}}


def reference(
    rec: Record, model: str, provider_id: str, context: Mapping[str, str] | None = None, **usage: int | float
) -> int:
    """What genai_prices.calc_price charges, in nano-USD, for the record's usage (or for `usage` when given)."""
    when = datetime.fromtimestamp(rec.start_time_ns // 10**9, UTC)
    price = calc_price(
        Usage(**(usage or usage_of(rec))),
        model,
        provider_id=provider_id,
        genai_request_timestamp=when,
        price_context=context,
    )
    return to_nusd(price.total_price)


def priced(rec: Record, pricer: Pricer | None = None) -> Record:
    (pricer or Pricer()).price(rec)
    return rec


# --- the catalog, as genai-prices prices it -----------------------------------------------------------------------


def test_gemini_audio_cached_audio_and_image_tokens():
    rec = priced(
        record(
            "gcp.gemini",
            "gemini-2.5-flash",
            {"cache_audio_read_tokens": 1_000, "input_image_tokens": 2_000},
            input_tokens=10_000,
            cached_tokens=4_000,
            input_audio_tokens=3_000,
            output_tokens=500,
        )
    )
    assert rec.priced and rec.price_source == f"genai-prices {VERSION} google/gemini-2.5-flash"
    assert rec.provider_cost_nusd == reference(rec, "gemini-2.5-flash", "google")
    # 1000 cached audio x $0.1 + 3000 other cache reads x $0.03 + 2000 other audio x $1 + 4000 other input (image
    # tokens included: no image price) x $0.3 + 500 output x $2.5, per million
    assert rec.provider_cost_nusd == 100_000 + 90_000 + 2_000_000 + 1_200_000 + 1_250_000
    without = priced(record("gcp.gemini", "gemini-2.5-flash", input_tokens=10_000, output_tokens=500))
    assert without.provider_cost_nusd == 3_000_000 + 1_250_000 < rec.provider_cost_nusd


def test_gpt_image_input_image_tokens():
    rec = priced(
        record(
            "openai", "gpt-image-1", {"input_image_tokens": 600, "images": 1}, input_tokens=1_000, output_tokens=4_000
        )
    )
    assert rec.provider_cost_nusd == reference(rec, "gpt-image-1", "openai")
    # 400 text x $5 + 600 image x $10 + 4000 output x $40, per million; the image count has no catalog price
    assert rec.provider_cost_nusd == 2_000_000 + 6_000_000 + 160_000_000


def test_tts_input_characters():
    rec = priced(record("openai", "tts-1", {"input_characters": 1_000}))
    assert rec.priced and rec.provider_cost_nusd == reference(rec, "tts-1", "openai") == 15_000_000  # $15 per million


def test_whisper_audio_seconds():
    rec = priced(record("openai", "whisper-1", {"audio_seconds": 90.5}))
    assert rec.priced and rec.provider_cost_nusd == reference(rec, "whisper-1", "openai") == 9_050_000  # $0.36 an hour
    # Input audio seconds alone: audio_seconds (their total) is taken as their sum, which genai-prices needs.
    parts = priced(record("openai", "whisper-1", {"input_audio_seconds": 90.5}))
    assert parts.provider_cost_nusd == reference(
        parts, "whisper-1", "openai", audio_seconds=90.5, input_audio_seconds=90.5
    )
    assert parts.provider_cost_nusd == rec.provider_cost_nusd


def test_groq_whisper_bills_ten_seconds_at_least():
    short = priced(record("groq", "whisper-large-v3", {"audio_seconds": 3}))
    assert short.provider_cost_nusd == reference(short, "whisper-large-v3", "groq") == to_nusd(Decimal("0.111") / 360)
    long = priced(record("groq", "whisper-large-v3", {"audio_seconds": 30.25}))
    assert long.provider_cost_nusd == reference(long, "whisper-large-v3", "groq")


def test_records_without_units_are_priced_as_before():
    plain = record("openai", "gpt-4o-mini", input_tokens=12_000, cached_tokens=4_000, output_tokens=800)
    assert priced(plain).provider_cost_nusd == reference(plain, "gpt-4o-mini", "openai") == 1_980_000
    rate = Rate(get_snapshot().find_provider_model("gpt-4o-mini", None, "openai", None)[1].get_prices(NOV_2026))
    usage = (12_000, 4_000, 0, 800, 0, 0, 0, 0, 0)
    assert rate.cost(usage) == rate.cost(usage, {}) == rate.cost(usage, {"images": 3})  # no catalog image price


def test_service_tier_and_request_time_apply_to_units():
    """gpt-image-1's batch prices (from 2026-10-14) cover its image tokens too; before that date, standard prices."""
    units = {"input_image_tokens": 600, "cache_image_read_tokens": 200}
    tokens = {"input_tokens": 1_000, "cached_tokens": 300, "output_tokens": 4_000}
    batch = priced(record("openai", "gpt-image-1", units, service_tier="batch", **tokens))
    standard = priced(record("openai", "gpt-image-1", units, **tokens))
    assert batch.provider_cost_nusd == reference(batch, "gpt-image-1", "openai", {"processing": "batch"})
    assert standard.provider_cost_nusd == reference(standard, "gpt-image-1", "openai")
    assert batch.provider_cost_nusd < standard.provider_cost_nusd
    earlier = datetime(2026, 6, 1, tzinfo=UTC)
    before = priced(record("openai", "gpt-image-1", units, service_tier="batch", when=earlier, **tokens))
    assert before.provider_cost_nusd == reference(before, "gpt-image-1", "openai") == standard.provider_cost_nusd


def test_usage_genai_prices_refuses_is_unpriced():
    base = {"input_tokens": 10_000, "cached_tokens": 4_000, "input_audio_tokens": 3_000, "output_tokens": 10}
    # Cached tokens and audio tokens without the cached audio: ambiguous for genai-prices (it raises), so unpriced.
    with pytest.raises(ValueError, match="cache_audio_read_tokens"):
        calc_price(Usage(**usage_of(record("gcp.gemini", "m", **base))), "gemini-2.5-flash", provider_id="google")
    ambiguous = priced(record("gcp.gemini", "gemini-2.5-flash", **base))
    assert (ambiguous.priced, ambiguous.provider_cost_nusd, ambiguous.price_source) == (False, None, UNPRICED)
    told = priced(record("gcp.gemini", "gemini-2.5-flash", {"cache_audio_read_tokens": 0}, **base))
    assert told.priced and told.provider_cost_nusd == reference(told, "gemini-2.5-flash", "google")
    # A part above its total.
    over = priced(record("openai", "gpt-image-1", {"input_image_tokens": 2_000}, input_tokens=1_000))
    assert over.price_source == UNPRICED


def test_units_a_price_does_not_charge_are_unpriced_not_zero():
    """An image count alone under a token price, or characters under a model priced by tokens: unpriced, never $0."""
    for rec in (
        record("openai", "gpt-image-1", {"images": 2}),
        record("openai", "gpt-4o-mini-tts", {"input_characters": 300}),
    ):
        assert priced(rec).price_source == UNPRICED and rec.provider_cost_nusd is None
    failed = priced(record("openai", "gpt-image-1", {"images": 0}, status="error"))
    assert (failed.priced, failed.provider_cost_nusd) == (True, 0)


def catalog_prices() -> list[ModelPrice]:
    found = []
    for provider in get_snapshot().providers:
        for model in provider.models:
            found += [model.prices] if isinstance(model.prices, ModelPrice) else [c.prices for c in model.prices]
            found += [v.prices for v in model.price_variants or ()]
    return found


def test_rate_equals_calc_price_on_random_usage():
    """Random usages with random units over the catalog's prices that price units other than tokens: `Rate.cost`
    gives calc_price's total, or raises where it raises."""
    rng = random.Random(20261203)
    token_keys = {"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok"}
    prices = [p for p in catalog_prices() if any(v is not None and k not in token_keys for k, v in vars(p).items())]
    assert len(prices) > 50
    keys = sorted(UNIT_KEYS - {"images"})
    outcomes = {"equal": 0, "refused": 0}
    for _ in range(3_000):
        model_price = rng.choice(prices)
        rate = Rate(model_price)

        def amount(most: int = 100_000) -> int:
            return rng.choice([0, 0, rng.randrange(1, 50), rng.randrange(1, most)])

        input_tokens = amount(400_000)
        cached = min(amount(), input_tokens)
        write = min(amount(), input_tokens - cached) if rng.random() < 0.3 else 0
        output = amount()
        usage = (
            input_tokens,
            cached,
            write,
            output,
            min(amount(), output) if rng.random() < 0.4 else 0,
            min(amount(), write) if rng.random() < 0.3 else 0,
            min(amount(), input_tokens) if rng.random() < 0.3 else 0,
            min(amount(), output) if rng.random() < 0.3 else 0,
            rng.choice([0, 0, 1, 3]),
        )
        related = [
            k
            for k in keys
            if {k, *REGISTRY.ancestor_usage_keys(k)} & {u for u in REGISTRY.units if _prices(model_price, u)}
        ]
        pool = related if related and rng.random() < 0.7 else keys
        units: dict[str, int | float] = {}
        for key in rng.sample(pool, min(len(pool), rng.choice([0, 1, 2, 3, 5]))):
            seconds = key in DURATIONS and rng.random() < 0.5
            units[key] = round(rng.uniform(0, 5_000), rng.choice([0, 1, 3])) if seconds else amount(50_000)
        mine: Decimal | ValueError
        try:
            mine = rate.cost(usage, units)
        except ValueError as error:
            mine = error
        expected: Decimal | ValueError
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # an unknown usage key would be a test bug
                expected = model_price.calc_price(Usage(**dict(zip(FIELD_KEYS, usage, strict=True)), **units))[
                    "total_price"
                ]
        except ValueError as error:
            expected = error
        if isinstance(expected, ValueError):
            assert isinstance(mine, ValueError), (model_price, usage, units, mine, expected)
            outcomes["refused"] += 1
        else:
            assert mine == expected, (model_price, usage, units)
            outcomes["equal"] += 1
    assert outcomes["equal"] > 2_000 and outcomes["refused"] > 50, outcomes


def _prices(model_price: ModelPrice, usage_key: str) -> bool:
    return getattr(model_price, REGISTRY.units[usage_key].price_key, None) is not None


# --- overrides -------------------------------------------------------------------------------------------------


def test_dall_e_is_unpriced_without_an_override_and_per_image_with_one():
    bare = priced(record("openai", "dall-e-3", {"images": 3}, operation="image_generation"))
    assert (bare.priced, bare.provider_cost_nusd, bare.customer_cost_nusd, bare.price_source) == (
        False,
        None,
        None,
        UNPRICED,
    )
    config = PricingConfig.from_dict({**DALL_E, "markup": "0.5", "fixed_fee_usd": "0.001"})
    rec = priced(record("openai", "dall-e-3", {"images": 3}, operation="image_generation"), Pricer(config))
    assert (rec.priced, rec.price_source) == (True, "config:dall-e-3")
    assert rec.provider_cost_nusd == 3 * 40_000_000
    assert rec.customer_cost_nusd == 3 * 40_000_000 * 3 // 2 + 1_000_000


def test_per_minute_and_per_character_overrides():
    config = PricingConfig.from_dict(
        {
            "overrides": [
                {"model": "my-whisper", "per_audio_minute_usd": 0.006},
                {"model": "my-tts", "per_million_characters_usd": 16, "input_per_mtok": 1, "output_per_mtok": 2},
            ]
        }
    )
    pricer = Pricer(config)
    assert priced(record("vllm", "my-whisper", {"audio_seconds": 90}), pricer).provider_cost_nusd == 9_000_000
    assert priced(record("vllm", "my-whisper", {"input_audio_seconds": 45.5}), pricer).provider_cost_nusd == 4_550_000
    assert priced(record("vllm", "my-whisper", input_tokens=1_000), pricer).provider_cost_nusd == 0  # tokens: free
    tts = priced(record("vllm", "my-tts", {"input_characters": 2_500}, input_tokens=1_000), pricer)
    assert tts.provider_cost_nusd == 40_000_000 + 1_000_000  # 2500 chars x $16 + 1000 tokens x $1, per million
    # An entry whose units do not cover the record's usage leaves it unpriced.
    assert priced(record("vllm", "my-whisper", {"input_characters": 10}), pricer).price_source == UNPRICED


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"per_image_usd": -1}, "pricing.overrides[0].per_image_usd"),
        ({"per_audio_minute_usd": "lots"}, "pricing.overrides[0].per_audio_minute_usd"),
        ({"per_million_characters_usd": True}, "pricing.overrides[0].per_million_characters_usd"),
        ({"per_image_usd": float("inf")}, "pricing.overrides[0].per_image_usd"),
        (
            {"per_video_second_usd": 1, "input_per_mtok": 1, "output_per_mtok": 1},
            "pricing.overrides[0].per_video_second_usd",
        ),
        ({"input_per_mtok": 1}, "pricing.overrides[0].output_per_mtok"),
        ({"per_image_usd": 0.04, "input_per_mtok": -2}, "pricing.overrides[0].input_per_mtok"),
    ],
)
def test_bad_unit_prices_name_the_key(entry: dict[str, Any], key: str):
    with pytest.raises(PricingConfigError) as error:
        PricingConfig.from_dict({"overrides": [{"model": "m", **entry}]})
    assert error.value.key == key and str(error.value).startswith(f"{key}: ")


def test_unit_prices_make_token_prices_optional():
    (entry,) = PricingConfig.from_dict({"overrides": [{"model": "m", "per_image_usd": 0.04}]}).overrides
    assert (entry.per_image_usd, entry.input_per_mtok, entry.output_per_mtok) == (Decimal("0.04"), None, None)


# --- stored and repriced -----------------------------------------------------------------------------------------


def test_units_are_stored_and_repriced(store: Store):
    when = datetime(2026, 1, 5, 12, tzinfo=UTC)
    image = record("openai", "dall-e-3", {"images": 2}, when=when, record_id="a1", operation="image_generation")
    speech = record("openai", "tts-1", {"input_characters": 400}, when=when, record_id="a2", operation="text_to_speech")
    for rec in (image, speech):
        Pricer().price(rec)
    assert store.write([image, speech]) == [image, speech]
    assert store.get("a1") == image and image.price_source == UNPRICED
    assert store.get("a2") == speech and speech.provider_cost_nusd == 6_000_000

    outcome = reprice(store, Pricer(PricingConfig.from_dict(DALL_E)), ns(when) - 3_600 * 10**9, ns(when) + 10**9)
    assert outcome.changed == 1
    again = store.get("a1")
    assert again is not None and again.units == {"images": 2}
    assert (again.priced, again.provider_cost_nusd, again.price_source) == (True, 80_000_000, "config:dall-e-3")
    (row,) = store.usage([], ns(when) - 86_400 * 10**9, ns(when) + 86_400 * 10**9)
    assert (row["provider_cost_nusd"], row["unpriced_requests"]) == (86_000_000, 0)


# --- end to end --------------------------------------------------------------------------------------------------


def audit_event(span_id: int, attrs: dict[str, Any]) -> LogRecord:
    return LogRecord(
        time_unix_nano=time.time_ns(),
        event_name="llmtally.completion",
        trace_id=b"\x01" * 16,
        span_id=span_id.to_bytes(8, "big"),
        attributes=[_encode_key_value(k, v) for k, v in attrs.items()],
    )


def test_receiver_prices_unit_attributes_end_to_end(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/audit.db"
    receiver = Receiver(tmp_path, url, pricing=DALL_E).start()
    common = {"llmtally.usage.source": "provider", "llmtally.duration": 0.5}
    events = [
        audit_event(
            1,
            {
                **common,
                "gen_ai.operation.name": "generate_content",
                "gen_ai.provider.name": "gcp.gemini",
                "gen_ai.request.model": "gemini-2.5-flash",
                "gen_ai.usage.input_tokens": 10_000,
                "gen_ai.usage.output_tokens": 500,
                "gen_ai.usage.cache_read.input_tokens": 4_000,
                "llmtally.usage.audio.input_tokens": 3_000,
                "llmtally.usage.unit.cache_audio_read_tokens": 1_000,
                "llmtally.usage.unit.input_image_tokens": 2_000,
            },
        ),
        audit_event(
            2,
            {
                **common,
                "gen_ai.operation.name": "image_generation",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "dall-e-3",
                "gen_ai.usage.input_tokens": 0,
                "gen_ai.usage.output_tokens": 0,
                "llmtally.usage.unit.images": 2,
            },
        ),
        audit_event(
            3,
            {
                **common,
                "gen_ai.operation.name": "transcription",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "whisper-1",
                "llmtally.usage.unit.audio_seconds": 90.5,
            },
        ),
        audit_event(
            4,
            {
                **common,
                "gen_ai.operation.name": "transcription",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "whisper-1",
                "llmtally.usage.unit.audio_seconds": "90",  # text: rejected with its reason, the rest kept
            },
        ),
    ]
    request = ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=events)])])
    request.resource_logs[0].scope_logs[0].scope.name = "llmtally"
    try:
        answer = httpx.post(
            f"{receiver.http_url}/v1/logs",
            content=request.SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
            timeout=30,
        )
        assert answer.status_code == 200
        partial = ExportLogsServiceResponse.FromString(answer.content).partial_success
        assert partial.rejected_log_records == 1 and "units.audio_seconds='90'" in partial.error_message
    finally:
        assert receiver.stop() == 0
    with open_store(url) as store:
        gemini, image, whisper = (store.get(f"{i:016x}") for i in (1, 2, 3))
        assert store.get(f"{4:016x}") is None
    assert gemini is not None and image is not None and whisper is not None
    assert gemini.units == {"cache_audio_read_tokens": 1_000, "input_image_tokens": 2_000}
    assert gemini.priced and gemini.provider_cost_nusd == reference(gemini, "gemini-2.5-flash", "google") == 4_640_000
    assert (image.operation, image.units, image.provider_cost_nusd) == ("image_generation", {"images": 2}, 80_000_000)
    assert whisper.units == {"audio_seconds": 90.5}
    assert whisper.provider_cost_nusd == reference(whisper, "whisper-1", "openai") == 9_050_000
