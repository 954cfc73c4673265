"""OpenAI images and audio through the real SDK (and raw HTTP for the JSON requests) to the fake provider:
images.generate / edit, audio.speech, transcriptions and translations, sync and async, streamed and not.

Each record is priced by the receiver and compared with genai-prices' `calc_price` on the counts the provider
reported. The checks marked "unit prices" rely on the receiver pricing the `llmtally.usage.unit.*` attributes (image
tokens, characters, audio seconds, and per-image `pricing:` overrides).
"""

from __future__ import annotations

import asyncio
from typing import Any

import genai_prices
import httpx
import openai
import pytest

from llmtally.demo.fake_openai_media import (
    AUDIO_DURATION,
    EDIT_IMAGE_TOKENS,
    EDIT_TEXT_TOKENS,
    IMAGE_USAGE,
    PNG_1X1,
    SPEECH_AUDIO,
    SPEECH_USAGE,
    TRANSCRIPT,
    TRANSCRIPTION_USAGE,
    WHISPER_USAGE,
)
from llmtally.exporter.price import Pricer, PricingConfig
from pricing_helpers import usage_cost

SPOKEN = "Hello from the fake provider, in a calm voice."
AUDIO_FILE = ("speech.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00fake-audio", "audio/mpeg")
KEY = "sk-test-media-0123456789"
# What a transcription's usage reports, as genai-prices counts it.
TRANSCRIPTION_COUNTS = {
    "input_tokens": TRANSCRIPTION_USAGE["input_tokens"],
    "input_audio_tokens": TRANSCRIPTION_USAGE["input_token_details"]["audio_tokens"],
    "output_tokens": TRANSCRIPTION_USAGE["output_tokens"],
}


def client(provider: Any, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=provider.openai_base_url, api_key=KEY, **kwargs)


def catalog_cost(record: Any, model: str, **usage: int) -> int:
    """What genai-prices charges for the counts the provider reported, in nano-USD."""
    return usage_cost(genai_prices.Usage(**usage), model, "openai", record)


def assert_unpriced(record: Any) -> None:
    assert not record.priced and record.provider_cost_nusd is None and record.price_source == "unpriced"


# --- images --------------------------------------------------------------------------------------------------


def test_image_generation_with_token_usage(telemetry, provider):
    answer = client(provider).images.generate(
        model="gpt-image-1", prompt="a lighthouse at dawn", n=1, size="1024x1024", quality="high"
    )
    assert answer.usage is not None and answer.usage.output_tokens == IMAGE_USAGE["output_tokens"]
    attrs, record = telemetry.stored()
    assert telemetry.spans()[0].name == "image_generation gpt-image-1"
    assert attrs["gen_ai.operation.name"] == "image_generation"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-image-1"
    assert attrs["gen_ai.request.choice.count"] == 1
    assert attrs["gen_ai.usage.input_tokens"] == IMAGE_USAGE["input_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == IMAGE_USAGE["output_tokens"]
    assert attrs["llmtally.usage.total_tokens"] == IMAGE_USAGE["total_tokens"]
    assert attrs["llmtally.usage.unit.images"] == 1
    assert "llmtally.usage.unit.input_image_tokens" not in attrs  # a text prompt only
    assert attrs["llmtally.usage.source"] == "provider"
    assert attrs["llmtally.provider.request_id"].startswith("req_")
    cost = catalog_cost(record, "gpt-image-1", input_tokens=16, output_tokens=IMAGE_USAGE["output_tokens"])
    assert record.priced and record.provider_cost_nusd == cost > 0


def test_dall_e_images_are_counted_and_flagged_unpriced(telemetry, provider):
    """DALL-E answers carry no usage and genai-prices has no DALL-E price: counted, never $0."""
    answer = client(provider).images.generate(model="dall-e-2", prompt="a red square", n=2, size="256x256")
    assert len(answer.data or []) == 2
    attrs, record = telemetry.stored()
    assert attrs["gen_ai.request.model"] == "dall-e-2"
    assert attrs["llmtally.usage.unit.images"] == 2
    assert attrs["gen_ai.usage.input_tokens"] == 0 and attrs["gen_ai.usage.output_tokens"] == 0
    assert attrs["llmtally.usage.source"] == "provider"
    assert_unpriced(record)


def test_per_image_override_prices_dall_e(telemetry, provider):
    """Unit prices: a `pricing:` override with `per_image_usd` prices a per-image model."""
    client(provider).images.generate(model="dall-e-3", prompt="a red square", size="1024x1024")
    config = PricingConfig.from_dict(
        {"overrides": [{"model": "dall-e-3", "provider": "openai", "per_image_usd": 0.04}]}
    )
    attrs, record = telemetry.stored(Pricer(config))
    assert attrs["llmtally.usage.unit.images"] == 1
    assert record.priced and record.provider_cost_nusd == 40_000_000


def edit(provider: Any, **kwargs: Any) -> Any:
    return client(provider).images.edit(
        model="gpt-image-1", image=("in.png", PNG_1X1, "image/png"), prompt="add a hat", **kwargs
    )


def test_image_edit_multipart_reads_the_model_and_input_image_tokens(telemetry, provider):
    answer = edit(provider, n=1)
    assert answer.usage is not None
    assert provider.requests[0].headers["content-type"].startswith("multipart/form-data")
    attrs, _ = telemetry.stored()
    assert telemetry.spans()[0].name == "image_edit gpt-image-1"
    assert attrs["gen_ai.operation.name"] == "image_edit"
    assert attrs["gen_ai.request.model"] == "gpt-image-1"
    assert attrs["gen_ai.usage.input_tokens"] == EDIT_TEXT_TOKENS + EDIT_IMAGE_TOKENS
    assert attrs["llmtally.usage.unit.input_image_tokens"] == EDIT_IMAGE_TOKENS
    assert attrs["gen_ai.usage.output_tokens"] == IMAGE_USAGE["output_tokens"]
    assert attrs["llmtally.usage.unit.images"] == 1


def test_image_edit_cost_prices_input_image_tokens_at_their_rate(telemetry, provider):
    """Unit prices: the input image tokens at gpt-image-1's image rate, not its text rate."""
    edit(provider)
    _, record = telemetry.stored()
    cost = catalog_cost(
        record,
        "gpt-image-1",
        input_tokens=EDIT_TEXT_TOKENS + EDIT_IMAGE_TOKENS,
        input_image_tokens=EDIT_IMAGE_TOKENS,
        output_tokens=IMAGE_USAGE["output_tokens"],
    )
    assert record.provider_cost_nusd == cost


def test_streamed_image_generation(telemetry, provider):
    events = list(
        client(provider).images.generate(model="gpt-image-1", prompt="a lighthouse", stream=True, partial_images=2)
    )
    assert [e.type for e in events][-1] == "image_generation.completed"
    record = telemetry.record()
    assert record["gen_ai.request.stream"] is True
    assert record["llmtally.stream.outcome"] == "completed"
    assert record["llmtally.usage.source"] == "provider"
    assert record["gen_ai.usage.output_tokens"] == IMAGE_USAGE["output_tokens"]
    assert record["llmtally.usage.unit.images"] == 1  # partial images are previews of the one image


# --- speech --------------------------------------------------------------------------------------------------


def test_speech_binary_answer_counts_the_input_characters(telemetry, provider):
    answer = client(provider).audio.speech.create(model="tts-1", voice="alloy", input=SPOKEN)
    assert answer.content == SPEECH_AUDIO  # the audio reaches the app untouched
    attrs, _ = telemetry.stored()
    assert telemetry.spans()[0].name == "text_to_speech tts-1"
    assert attrs["gen_ai.operation.name"] == "text_to_speech"
    assert attrs["llmtally.usage.unit.input_characters"] == len(SPOKEN)
    assert attrs["gen_ai.usage.input_tokens"] == 0 and attrs["gen_ai.usage.output_tokens"] == 0
    assert attrs["llmtally.usage.source"] == "provider"
    assert attrs["gen_ai.request.stream"] is False


def test_speech_cost_is_per_character(telemetry, provider):
    """Unit prices: tts-1-hd is priced per input character."""
    with client(provider).audio.speech.with_streaming_response.create(
        model="tts-1-hd", voice="alloy", input=SPOKEN
    ) as answer:
        assert b"".join(answer.iter_bytes()) == SPEECH_AUDIO
    attrs, record = telemetry.stored()
    assert attrs["llmtally.usage.unit.input_characters"] == len(SPOKEN)
    assert record.provider_cost_nusd == catalog_cost(record, "tts-1-hd", input_characters=len(SPOKEN)) > 0


def test_failed_speech_counts_nothing(telemetry, provider):
    provider.fail_next(400)
    with pytest.raises(openai.BadRequestError):
        client(provider, max_retries=0).audio.speech.create(model="tts-1", voice="alloy", input=SPOKEN)
    record = telemetry.record()
    assert record["error.type"] == "invalid_request"
    assert record["llmtally.usage.source"] == "none"
    assert not any(name.startswith("llmtally.usage.unit.") for name in record)


def test_speech_events_read_whole_by_the_sdk(telemetry, provider):
    answer = client(provider).audio.speech.create(
        model="gpt-4o-mini-tts", voice="alloy", input=SPOKEN, stream_format="sse"
    )
    assert b"speech.audio.done" in answer.content
    attrs, record = telemetry.stored()
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["llmtally.usage.source"] == "provider"
    assert attrs["gen_ai.usage.input_tokens"] == SPEECH_USAGE["input_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == SPEECH_USAGE["output_tokens"]
    assert "llmtally.usage.unit.input_characters" not in attrs  # priced per token, not per character
    expected = catalog_cost(record, "gpt-4o-mini-tts", input_tokens=14, output_tokens=SPEECH_USAGE["output_tokens"])
    assert record.priced and record.provider_cost_nusd == expected > 0


def test_speech_events_streamed(telemetry, provider):
    with client(provider).audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input=SPOKEN, stream_format="sse", extra_headers={"x-fake-chunks": "4"}
    ) as answer:
        lines = [line for line in answer.iter_lines() if line]
    assert len(lines) == 5
    record = telemetry.record()
    assert record["llmtally.stream.outcome"] == "completed"
    assert record["gen_ai.response.time_to_first_chunk"] > 0
    assert record["gen_ai.usage.output_tokens"] == SPEECH_USAGE["output_tokens"]


# --- transcriptions and translations -------------------------------------------------------------------------


def test_whisper_transcription_reports_seconds(telemetry, provider):
    answer = client(provider).audio.transcriptions.create(model="whisper-1", file=AUDIO_FILE, temperature=0.2)
    assert answer.text == TRANSCRIPT
    assert provider.requests[0].headers["content-type"].startswith("multipart/form-data")
    attrs, _ = telemetry.stored()
    assert telemetry.spans()[0].name == "transcription whisper-1"
    assert attrs["gen_ai.operation.name"] == "transcription"
    assert attrs["gen_ai.request.model"] == "whisper-1"
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["llmtally.usage.unit.audio_seconds"] == WHISPER_USAGE["seconds"]
    assert attrs["llmtally.usage.source"] == "provider"


def test_whisper_transcription_cost_is_per_second(telemetry, provider):
    """Unit prices: whisper-1 is priced per second of audio."""
    client(provider).audio.transcriptions.create(model="whisper-1", file=AUDIO_FILE, response_format="verbose_json")
    _, record = telemetry.stored()
    assert record.provider_cost_nusd == catalog_cost(record, "whisper-1", audio_seconds=WHISPER_USAGE["seconds"]) > 0


def test_token_transcription_prices_audio_tokens(telemetry, provider):
    answer = client(provider).audio.transcriptions.create(model="gpt-4o-transcribe", file=AUDIO_FILE)
    assert answer.text == TRANSCRIPT
    attrs, record = telemetry.stored()
    details = TRANSCRIPTION_USAGE["input_token_details"]
    assert attrs["gen_ai.usage.input_tokens"] == TRANSCRIPTION_USAGE["input_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == TRANSCRIPTION_USAGE["output_tokens"]
    assert attrs["llmtally.usage.audio.input_tokens"] == details["audio_tokens"]
    assert attrs["llmtally.usage.total_tokens"] == TRANSCRIPTION_USAGE["total_tokens"]
    expected = catalog_cost(record, "gpt-4o-transcribe", **TRANSCRIPTION_COUNTS)
    assert record.priced and record.provider_cost_nusd == expected
    text_rate = catalog_cost(record, "gpt-4o-transcribe", input_tokens=122, output_tokens=11)
    assert expected > text_rate  # the audio tokens at their own, higher rate


def test_streamed_transcription(telemetry, provider):
    events = list(
        client(provider).audio.transcriptions.create(
            model="gpt-4o-mini-transcribe", file=AUDIO_FILE, stream=True, extra_headers={"x-fake-chunks": "3"}
        )
    )
    assert [e.type for e in events] == ["transcript.text.delta"] * 3 + ["transcript.text.done"]
    attrs, record = telemetry.stored()
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["llmtally.stream.outcome"] == "completed"
    assert attrs["llmtally.usage.source"] == "provider"
    assert attrs["llmtally.usage.audio.input_tokens"] == TRANSCRIPTION_USAGE["input_token_details"]["audio_tokens"]
    expected = catalog_cost(record, "gpt-4o-mini-transcribe", **TRANSCRIPTION_COUNTS)
    assert record.provider_cost_nusd == expected > 0


def test_plain_text_transcription_has_no_usage(telemetry, provider):
    answer = client(provider).audio.transcriptions.create(model="whisper-1", file=AUDIO_FILE, response_format="text")
    assert TRANSCRIPT in str(answer)
    attrs, record = telemetry.stored()
    assert attrs["llmtally.usage.source"] == "none"
    assert_unpriced(record)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_translations(telemetry, provider):
    c = client(provider)
    assert c.audio.translations.create(model="whisper-1", file=AUDIO_FILE).text == TRANSCRIPT
    c.audio.translations.create(model="whisper-1", file=AUDIO_FILE, response_format="verbose_json")
    plain, verbose = telemetry.records()
    assert plain["gen_ai.operation.name"] == verbose["gen_ai.operation.name"] == "translation"
    assert plain["llmtally.usage.source"] == "none"  # a json translation reports no usage
    # verbose_json reports the duration: billed by the second, rounded.
    assert verbose["llmtally.usage.unit.audio_seconds"] == round(AUDIO_DURATION) == 8
    assert verbose["llmtally.usage.source"] == "provider"


# --- async, raw HTTP, errors and retries ---------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_async_client(telemetry, provider):
    async def main() -> None:
        c = openai.AsyncOpenAI(base_url=provider.openai_base_url, api_key=KEY)
        await c.images.generate(model="gpt-image-1", prompt="a lighthouse")
        await c.images.edit(model="gpt-image-1", image=("in.png", PNG_1X1, "image/png"), prompt="add a hat")
        speech = await c.audio.speech.create(model="tts-1", voice="alloy", input=SPOKEN)
        assert speech.content == SPEECH_AUDIO
        await c.audio.transcriptions.create(model="gpt-4o-transcribe", file=AUDIO_FILE)
        stream = await c.audio.transcriptions.create(model="gpt-4o-transcribe", file=AUDIO_FILE, stream=True)
        [event async for event in stream]
        await c.audio.translations.create(model="whisper-1", file=AUDIO_FILE, response_format="verbose_json")
        await c.close()

    asyncio.run(main())
    records = telemetry.records()
    assert [r["gen_ai.operation.name"] for r in records] == [
        "image_generation",
        "image_edit",
        "text_to_speech",
        "transcription",
        "transcription",
        "translation",
    ]
    assert records[1]["llmtally.usage.unit.input_image_tokens"] == EDIT_IMAGE_TOKENS
    assert records[2]["llmtally.usage.unit.input_characters"] == len(SPOKEN)
    assert records[3]["gen_ai.usage.input_tokens"] == records[4]["gen_ai.usage.input_tokens"] == 122
    assert records[4]["llmtally.stream.outcome"] == "completed"
    assert records[5]["llmtally.usage.unit.audio_seconds"] == 8
    assert all(r["gen_ai.provider.name"] == "openai" for r in records)
    assert len(telemetry.spans(scope=None)) == 6


def test_raw_http_json_requests(telemetry, provider):
    """Images and speech requests are JSON: the HTTP hook records them without an SDK."""
    with httpx.Client(base_url=provider.openai_base_url, headers={"authorization": f"Bearer {KEY}"}) as http:
        http.post("/images/generations", json={"model": "gpt-image-1", "prompt": "a lighthouse"}).raise_for_status()
        speech = http.post("/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": SPOKEN})
        assert speech.content == SPEECH_AUDIO
        body = {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": SPOKEN, "stream_format": "sse"}
        with http.stream("POST", "/audio/speech", json=body) as answer:
            list(answer.iter_lines())
    generated, spoken, streamed = telemetry.records()
    assert generated["gen_ai.operation.name"] == "image_generation"
    assert generated["gen_ai.usage.output_tokens"] == IMAGE_USAGE["output_tokens"]
    assert generated["gen_ai.provider.name"] == "openai_compatible"  # an unnamed host
    assert spoken["llmtally.usage.unit.input_characters"] == len(SPOKEN)
    assert streamed["llmtally.stream.outcome"] == "completed"
    assert streamed["gen_ai.usage.output_tokens"] == SPEECH_USAGE["output_tokens"]


def test_error_answer(telemetry, provider):
    provider.fail_next(400)
    with pytest.raises(openai.BadRequestError):
        client(provider, max_retries=0).images.generate(model="gpt-image-1", prompt="x", size="7x7")
    record = telemetry.record()
    assert record["error.type"] == "invalid_request"
    assert record["http.response.status_code"] == 400
    assert record["llmtally.error.message"] == "Invalid value for 'size'."


def test_sdk_retries_are_one_record(telemetry, provider):
    provider.fail_next(500, retry_after="0")
    client(provider, max_retries=2).audio.transcriptions.create(model="gpt-4o-transcribe", file=AUDIO_FILE)
    assert len(provider.requests) == 2
    record = telemetry.record()
    assert record["http.request.resend_count"] == 1
    assert "error.type" not in record
    assert record["gen_ai.usage.input_tokens"] == TRANSCRIPTION_USAGE["input_tokens"]
