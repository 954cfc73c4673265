"""Pricing against the real genai-prices catalog (bundled snapshot, no network, no mocks)."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import genai_prices
import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import DataSnapshot, get_snapshot, set_custom_snapshot
from genai_prices.types import ModelPrice

from llmtally.exporter.normalise.record import Record
from llmtally.exporter.price import (
    UNPRICED,
    Pricer,
    PricingConfig,
    PricingConfigError,
    catalog_age_seconds,
    catalog_version,
    lookup,
)

VERSION = genai_prices.__version__
NOV_2026 = datetime(2026, 11, 2, 18, 0, tzinfo=UTC)


def ns(when: datetime) -> int:
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000


def record(
    provider: str,
    model: str,
    *,
    response_model: str = "",
    input: int = 0,
    output: int = 0,
    cached: int = 0,
    cache_write: int = 0,
    reasoning: int = 0,
    when: datetime = NOV_2026,
) -> Record:
    return Record(
        record_id="r1",
        start_time_ns=ns(when),
        end_time_ns=ns(when) + 10**9,
        provider=provider,
        request_model=model,
        response_model=response_model,
        input_tokens=input,
        output_tokens=output,
        cached_tokens=cached,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
    )


def nusd(usd: Decimal) -> int:
    return int((usd * 10**9).to_integral_value(ROUND_HALF_EVEN))


def reference(rec: Record, model: str, provider_id: str, when: datetime = NOV_2026) -> int:
    """What genai_prices.calc_price says, in nano-USD."""
    usage = Usage(
        input_tokens=rec.input_tokens,
        cache_read_tokens=rec.cached_tokens,
        cache_write_tokens=rec.cache_write_tokens,
        output_tokens=rec.output_tokens,
        output_reasoning_tokens=rec.reasoning_tokens,
    )
    return nusd(calc_price(usage, model, provider_id=provider_id, genai_request_timestamp=when).total_price)


def priced(rec: Record, pricer: Pricer | None = None) -> Record:
    (pricer or Pricer()).price(rec)
    return rec


def test_openai_cached_tokens():
    rec = priced(record("openai", "gpt-4o-mini", input=12_000, cached=4_000, output=800))
    assert rec.priced and rec.price_source == f"genai-prices {VERSION} openai/gpt-4o-mini"
    assert rec.provider_cost_nusd == reference(rec, "gpt-4o-mini", "openai")
    # 8000 uncached x $0.15 + 4000 cache reads x $0.075 + 800 x $0.6, per million
    assert rec.provider_cost_nusd == 1_980_000
    assert rec.customer_cost_nusd == rec.provider_cost_nusd


def test_openai_reasoning_model():
    rec = priced(record("openai", "o4-mini", input=3_000, cached=1_024, output=2_500, reasoning=1_900))
    assert rec.provider_cost_nusd == reference(rec, "o4-mini", "openai")
    # reasoning is part of output: 1976 x 1.1 + 1024 x 0.275 + 2500 x 4.4
    assert rec.provider_cost_nusd == 2_173_600 + 281_600 + 11_000_000


def test_anthropic_cache_reads_and_writes():
    rec = priced(record("anthropic", "claude-haiku-4-5", input=10_000, cached=5_000, cache_write=3_000, output=500))
    assert rec.price_source == f"genai-prices {VERSION} anthropic/claude-haiku-4-5"
    assert rec.provider_cost_nusd == reference(rec, "claude-haiku-4-5", "anthropic")
    # 2000 x $1 + 5000 reads x $0.1 + 3000 writes x $1.25 + 500 x $5
    assert rec.provider_cost_nusd == 2_000_000 + 500_000 + 3_750_000 + 2_500_000


def test_response_model_first():
    rec = priced(record("openai", "gpt-4o", response_model="gpt-4o-2024-05-13", input=1_000, output=100))
    assert rec.price_source == f"genai-prices {VERSION} openai/gpt-4o-2024-05-13"
    assert rec.provider_cost_nusd == reference(rec, "gpt-4o-2024-05-13", "openai")
    assert rec.provider_cost_nusd != reference(rec, "gpt-4o", "openai")
    dated = priced(record("openai", "gpt-4o-mini", response_model="gpt-4o-mini-2024-07-18", input=1_000))
    assert dated.price_source == f"genai-prices {VERSION} openai/gpt-4o-mini"
    unknown_response = priced(record("openai", "gpt-4o-mini", response_model="not-a-model", input=1_000))
    assert unknown_response.price_source == f"genai-prices {VERSION} openai/gpt-4o-mini"


@pytest.mark.parametrize(
    ("model", "tokens", "expected"),
    [
        # base: 150k uncached x $3 + 50k reads x $0.3 + 1000 x $15
        ("claude-sonnet-4-5", 200_000, 450_000_000 + 15_000_000 + 15_000_000),
        # above 200k input tokens every token costs the tier price: x $6, x $0.6, x $22.5
        ("claude-sonnet-4-5", 250_000, 1_200_000_000 + 30_000_000 + 22_500_000),
    ],
)
def test_tiered_price(model, tokens, expected):
    rec = priced(record("anthropic", model, input=tokens, cached=50_000, output=1_000))
    assert rec.provider_cost_nusd == reference(rec, model, "anthropic") == expected


def test_price_as_of_request_time():
    # o3's price dropped by 80% on 2025-06-10: the catalog has both.
    before, after = datetime(2025, 6, 9, 23, 59, tzinfo=UTC), datetime(2025, 6, 10, 0, 1, tzinfo=UTC)
    pricer = Pricer()
    old = priced(record("openai", "o3", input=10_000, output=2_000, when=before), pricer)
    new = priced(record("openai", "o3", input=10_000, output=2_000, when=after), pricer)
    assert old.provider_cost_nusd == reference(old, "o3", "openai", before) == 100_000_000 + 80_000_000
    assert new.provider_cost_nusd == reference(new, "o3", "openai", after) == 20_000_000 + 16_000_000
    # DeepSeek's off-peak price depends on the time of day (UTC 16:30-00:30).
    for hour in (3, 17):
        when = datetime(2026, 3, 1, hour, tzinfo=UTC)
        rec = priced(record("deepseek", "deepseek-chat", input=10_000, output=1_000, when=when), pricer)
        assert rec.provider_cost_nusd == reference(rec, "deepseek-chat", "deepseek", when)
    peak, off_peak = (pricer.lookup("deepseek", "deepseek-chat", datetime(2026, 3, 1, h, tzinfo=UTC)) for h in (3, 17))
    assert peak is not None and off_peak is not None and peak.input_per_mtok != off_peak.input_per_mtok


def test_markup_and_fixed_fee():
    config = PricingConfig.from_dict({"markup": 0.1, "fixed_fee_usd": 0.0005})
    assert config.markup == Decimal("0.1") and config.fixed_fee_usd == Decimal("0.0005")
    rec = priced(record("openai", "gpt-4o-mini", input=1_234, cached=333, output=77), Pricer(config))
    provider = rec.provider_cost_nusd
    # 901 x $0.15 + 333 x $0.075 + 77 x $0.6 per million
    assert provider == reference(rec, "gpt-4o-mini", "openai") == 135_150 + 24_975 + 46_200
    # customer = provider x (1 + markup) + fee: 226957.5 + 500000, to the even nano-dollar
    assert rec.customer_cost_nusd == int(Decimal(provider) * Decimal("1.1") + 500_000 + Decimal("0.5")) == 726_958


def test_overrides_exact_and_glob():
    config = PricingConfig.from_dict(
        {
            "markup": 0.1,
            "overrides": [
                {"model": "my-llama-70b", "input_per_mtok": 0.5, "output_per_mtok": "1.0"},
                {
                    "model": "my-llama-*",
                    "provider": "vllm",
                    "input_per_mtok": 0.1,
                    "output_per_mtok": 0.2,
                    "cache_read_per_mtok": 0.01,
                    "markup": 0.5,
                    "fixed_fee_usd": 0.001,
                },
            ],
        }
    )
    pricer = Pricer(config)
    exact = priced(record("vllm", "my-llama-70b", input=1_000_000, output=1_000), pricer)
    assert (exact.price_source, exact.provider_cost_nusd, exact.customer_cost_nusd) == (
        "config:my-llama-70b",
        500_000_000 + 1_000_000,
        551_100_000,
    )
    glob = priced(record("vllm", "My-Llama-8B", input=100_000, cached=60_000, output=10_000), pricer)
    # 40k x $0.1 + 60k cache reads x $0.01 + 10k x $0.2; customer x 1.5 + $0.001
    assert (glob.price_source, glob.provider_cost_nusd) == ("config:my-llama-*", 4_000_000 + 600_000 + 2_000_000)
    assert glob.customer_cost_nusd == 6_600_000 * 3 // 2 + 1_000_000
    other_provider = priced(record("ollama", "my-llama-8b", input=100), pricer)
    assert other_provider.price_source == UNPRICED and not other_provider.priced


def test_override_beats_catalog():
    config = PricingConfig.from_dict(
        {"overrides": [{"model": "gpt-4o-mini", "input_per_mtok": 0.1, "output_per_mtok": 0.4}]}
    )
    rec = priced(
        record("openai", "gpt-4o-mini", response_model="gpt-4o-mini-2024-07-18", input=1_000_000), Pricer(config)
    )
    assert (rec.price_source, rec.provider_cost_nusd) == ("config:gpt-4o-mini", 100_000_000)
    info = Pricer(config).lookup("openai", "gpt-4o-mini")
    assert info is not None and info.source == "config:gpt-4o-mini" and info.input_per_mtok == Decimal("0.1")


def test_unknown_model_is_unpriced_and_counted():
    pricer = Pricer(PricingConfig.from_dict({"fixed_fee_usd": 0.01}))
    for _ in range(2):
        rec = priced(record("openai", "totally-new-model", input=100, output=10), pricer)
        assert (rec.priced, rec.provider_cost_nusd, rec.customer_cost_nusd) == (False, None, None)
        assert rec.price_source == UNPRICED
    assert priced(record("ollama", "gpt-4o-mini", input=100), pricer).price_source == UNPRICED  # self-hosted
    assert priced(record("anthropic", "gpt-4o", input=100), pricer).price_source == UNPRICED  # not theirs
    assert priced(record("openai", "", input=100), pricer).price_source == UNPRICED
    assert pricer.unpriced_total == 5
    assert pricer.unpriced_models[("openai", "totally-new-model")] == 2


def test_zero_tokens():
    pricer = Pricer(PricingConfig.from_dict({"fixed_fee_usd": 0.01}))
    failed = record("anthropic", "claude-haiku-4-5")
    failed.status = "error"
    known = priced(failed, pricer)
    assert (known.priced, known.provider_cost_nusd, known.customer_cost_nusd) == (True, 0, 0)
    reported = record("anthropic", "claude-haiku-4-5")
    reported.usage_source = "provider"
    assert priced(reported, pricer).provider_cost_nusd == 0
    # A success whose tokens were never reported has an unknown cost, never a silent $0.
    silent = priced(record("anthropic", "claude-haiku-4-5"), pricer)
    assert (silent.priced, silent.provider_cost_nusd, silent.price_source) == (False, None, UNPRICED)
    unknown = priced(record("anthropic", "claude-unknown-9"), pricer)
    assert (unknown.priced, unknown.provider_cost_nusd, unknown.price_source) == (False, None, UNPRICED)


@pytest.mark.parametrize(
    ("provider", "model", "source"),
    [
        ("azure.ai.openai", "gpt-4o-mini", "azure/gpt-4o-mini"),
        ("x_ai", "grok-3", "x-ai/grok-3"),
        ("mistral_ai", "mistral-large-latest", "mistral/mistral-large"),
        ("gcp.gemini", "gemini-2.5-flash", "google/gemini-2.5-flash"),
        ("groq", "llama-3.1-8b-instant", "groq/llama-3.1-8b-instant"),
        ("openrouter", "openai/gpt-4o", "openrouter/openai/gpt-4o"),
        ("deepseek", "deepseek-chat", "deepseek/deepseek-chat"),
        ("openai_compatible", "claude-haiku-4-5", "anthropic/claude-haiku-4-5"),
        ("", "gpt-4o-mini", "openai/gpt-4o-mini"),
        ("openai", "claude-haiku-4-5", "anthropic/claude-haiku-4-5"),  # OpenAI SDK against Anthropic's API
        ("cerebras", "llama3.1-8b", "cerebras/llama3.1-8b"),  # a genai-prices id used as is
    ],
)
def test_provider_mapping(provider, model, source):
    rec = priced(record(provider, model, input=1_000, output=100))
    assert rec.price_source == f"genai-prices {VERSION} {source}"


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"markup": "lots"}, "pricing.markup"),
        ({"markup": -1}, "pricing.markup"),
        ({"fixed_fee_usd": -0.01}, "pricing.fixed_fee_usd"),
        ({"fixed_fee_usd": True}, "pricing.fixed_fee_usd"),
        ({"mark_up": 0.1}, "pricing.mark_up"),
        ({"overrides": {"model": "x"}}, "pricing.overrides"),
        ({"overrides": ["x"]}, "pricing.overrides[0]"),
        ({"overrides": [{"input_per_mtok": 1, "output_per_mtok": 1}]}, "pricing.overrides[0].model"),
        ({"overrides": [{"model": "m", "output_per_mtok": 1}]}, "pricing.overrides[0].input_per_mtok"),
        ({"overrides": [{"model": "m", "input_per_mtok": 1}]}, "pricing.overrides[0].output_per_mtok"),
        (
            {"overrides": [{"model": "m", "input_per_mtok": 1, "output_per_mtok": float("nan")}]},
            "pricing.overrides[0].output_per_mtok",
        ),
        (
            {"overrides": [{"model": "m", "input_per_mtok": 1, "output_per_mtok": 1, "cache_read": 1}]},
            "pricing.overrides[0].cache_read",
        ),
        (
            {"overrides": [{"model": "m", "input_per_mtok": 1, "output_per_mtok": 1, "provider": 3}]},
            "pricing.overrides[0].provider",
        ),
    ],
)
def test_bad_config_names_the_key(section, key):
    with pytest.raises(PricingConfigError) as error:
        PricingConfig.from_dict(section)
    assert error.value.key == key and str(error.value).startswith(f"{key}: ")


def test_config_defaults():
    assert PricingConfig.from_dict(None) == PricingConfig.from_dict({}) == PricingConfig()
    assert PricingConfig().markup == 0 and PricingConfig().overrides == ()


MODELS = [
    ("openai", "openai", "gpt-4o-mini"),
    ("openai", "openai", "o3"),
    ("openai", "openai", "gpt-5.4"),
    ("anthropic", "anthropic", "claude-sonnet-4-5"),
    ("anthropic", "anthropic", "claude-opus-4-6"),
    ("anthropic", "anthropic", "claude-haiku-4-5"),
    ("deepseek", "deepseek", "deepseek-chat"),
    ("deepseek", "deepseek", "deepseek-v4-pro"),
    ("gcp.gemini", "google", "gemini-2.5-pro"),
    ("x_ai", "x-ai", "grok-4.20"),
    ("mistral_ai", "mistral", "mistral-large-4"),
    ("groq", "groq", "llama-3.1-8b-instant"),
]


def random_record(rng: random.Random) -> tuple[Record, str, str, datetime]:
    provider, provider_id, model = rng.choice(MODELS)
    when = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(800 * 86_400))
    input_tokens = rng.choice([0, 1, rng.randrange(1, 5_000), rng.randrange(1, 400_000)])
    cached = rng.randrange(input_tokens + 1) if rng.random() < 0.6 else 0
    cache_write = rng.randrange(input_tokens - cached + 1) if rng.random() < 0.3 else 0
    output = rng.randrange(20_000)
    reasoning = rng.randrange(output + 1) if rng.random() < 0.4 else 0
    rec = record(
        provider,
        model,
        input=input_tokens,
        cached=cached,
        cache_write=cache_write,
        output=output,
        reasoning=reasoning,
        when=when,
    )
    return rec, model, provider_id, when


def test_cached_pricing_equals_calc_price():
    rng = random.Random(20261124)
    pricer = Pricer()
    for _ in range(3_000):
        rec, model, provider_id, when = random_record(rng)
        pricer.price(rec)
        assert rec.priced, rec
        assert rec.provider_cost_nusd == reference(rec, model, provider_id, when), rec


def test_lookup():
    info = lookup("anthropic", "claude-sonnet-4-5-20250929", NOV_2026)
    assert info is not None
    assert (info.provider, info.model, info.source) == (
        "anthropic",
        "claude-sonnet-4-5",
        f"genai-prices {VERSION} anthropic/claude-sonnet-4-5",
    )
    assert (info.input_per_mtok, info.output_per_mtok) == (Decimal(3), Decimal(15))
    assert (info.cache_read_per_mtok, info.cache_write_per_mtok) == (Decimal("0.3"), Decimal("3.75"))
    assert ("input", 200_000, Decimal(6)) in info.tiers
    old = lookup("openai", "o3", datetime(2025, 1, 1))
    assert old is not None and old.input_per_mtok == 10 and old.cache_write_per_mtok is None and old.tiers == ()
    assert lookup(None, "gpt-4o-mini", None) is not None
    assert lookup("openai", "no-such-model", None) is None


def test_catalog_version_and_age():
    assert catalog_version() == VERSION
    age = catalog_age_seconds()
    assert isinstance(age, float) and age >= 0


def test_follows_a_prices_update():
    """A snapshot swapped in by genai-prices' UpdatePrices is used from the next record on."""
    bundled = get_snapshot()
    pricer = Pricer()
    assert priced(record("openai", "gpt-4o-mini", input=1_000_000), pricer).provider_cost_nusd == 150_000_000
    openai = next(p for p in bundled.providers if p.id == "openai")
    mini = next(m for m in openai.models if m.id == "gpt-4o-mini")
    cheaper = replace(mini, prices=ModelPrice(input_mtok=Decimal("0.1"), output_mtok=Decimal(1)))
    updated = replace(openai, models=[cheaper, *(m for m in openai.models if m is not mini)])
    set_custom_snapshot(DataSnapshot([updated, *(p for p in bundled.providers if p is not openai)], True))
    try:
        rec = priced(record("openai", "gpt-4o-mini", input=1_000_000), pricer)
        assert rec.provider_cost_nusd == 100_000_000 and rec.price_source.startswith(f"genai-prices {VERSION}+")
        assert catalog_version().startswith(f"{VERSION}+") and catalog_age_seconds() < 60
    finally:
        set_custom_snapshot(None)
    assert priced(record("openai", "gpt-4o-mini", input=1_000_000), pricer).provider_cost_nusd == 150_000_000


@pytest.mark.slow
def test_throughput():
    rng = random.Random(7)
    records = [random_record(rng)[0] for _ in range(50_000)]
    pricer = Pricer()
    for rec in records[:1000]:
        pricer.price(rec)
    started = time.perf_counter()
    for rec in records:
        pricer.price(rec)
    rate = len(records) / (time.perf_counter() - started)
    assert rate > 30_000, f"{rate:.0f} records/s"
