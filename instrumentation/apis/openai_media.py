"""OpenAI's image and audio APIs: images.generate (`/images/generations`), images.edit (`/images/edits`,
multipart), audio.speech (`/audio/speech`), audio.transcriptions and audio.translations
(`/audio/transcriptions`, `/audio/translations`, multipart).

The semconv names none of these operations: their names are llmtally's own (`semconv.OP_*`). What each answer
bills, by genai-prices' usage key where it has one:
- images: GPT image models report token usage (an edit's input images as `input_image_tokens`, generated image
  tokens as `output_image_tokens` where reported apart); DALL-E models report none. Every image answer counts its
  images (`images`), which only a configured per-image price prices.
- speech: `tts-1` / `tts-1-hd` bill the input's characters (`input_characters`, counted from the request: the
  answer is audio); `gpt-4o-mini-tts` reports tokens in the `speech.audio.done` event of an SSE answer
  (`stream_format: "sse"`) and nothing in an audio answer.
- transcriptions and translations: `usage` of type `tokens` (the GPT-4o transcribe models; audio input tokens kept
  apart) or `duration` (`whisper-1`: `audio_seconds`); a `verbose_json` answer without usage gives its `duration`,
  billed by the second, rounded. Plain-text answers (`text`, `srt`, `vtt`) report nothing.

Multipart requests are read through the OpenAI SDK hook, which has their fields as a dict; the HTTP hook records
the JSON ones (images.generate, speech) without an SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import semconv
from ..usage import Usage, count, details
from ..wire import Event, events
from .base import Answer, PathEndpoint, Request, loads
from .openai import model_or_deployment, usage_from

_PER_CHARACTER = ("tts-1",)  # speech models billed per input character (tts-1, tts-1-hd and their snapshots)


class _Media(PathEndpoint):
    """An OpenAI media request (the same paths on OpenAI-compatible hosts, so no provider of its own)."""

    # Byte strings of which a streamed event must contain one to be parsed (deltas carry base64 audio or images).
    parsed: tuple[bytes, ...] = (b'"error"',)

    def model_of(self, body: Mapping[str, Any], path: str) -> str:
        return model_or_deployment(body, path)

    def read_event(self, answer: Answer, event: Event, *, capture: bool) -> bool:
        data = event.data
        if capture or any(mark in data for mark in self.parsed):
            obj = loads(data)
            if obj is not None:
                self.on_event(answer, event.name.decode("utf-8", "replace"), obj, capture=capture)
        return True

    def on_event(self, answer: Answer, name: str, data: Mapping[str, Any], *, capture: bool) -> None:
        kind = data.get("type")
        if kind == "error":
            error = data.get("error")
            found = error if isinstance(error, Mapping) else data
            answer.fail(found.get("code") or found.get("type") or "stream_error", found.get("message", ""))
        elif isinstance(kind, str):
            self.on_typed_event(answer, kind, data, capture=capture)

    def on_typed_event(self, answer: Answer, kind: str, data: Mapping[str, Any], *, capture: bool) -> None:
        """One streamed event other than an error, by its `type`."""


# --- images ------------------------------------------------------------------------------------------------


class _Images(_Media):
    event_prefix = ""  # the prefix of its streamed events' types
    markers = parsed = (b'.completed"', b'"error"')

    def read_whole(self, answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
        items = data.get("data")
        usage = data.get("usage")
        found = usage_from(usage) if isinstance(usage, Mapping) else Usage()
        if isinstance(items, list) and items:
            found.extra["images"] = len(items)
        if isinstance(usage, Mapping) or found.extra:
            answer.usage = found

    def on_typed_event(self, answer: Answer, kind: str, data: Mapping[str, Any], *, capture: bool) -> None:
        if kind == self.event_prefix + ".completed":  # one per image; partial images are previews of it
            answer.saw_end = True
            answer.partial = (answer.partial or 0) + 1
            usage = data.get("usage")
            found = usage_from(usage) if isinstance(usage, Mapping) else answer.usage or Usage()
            found.extra["images"] = answer.partial
            answer.usage = found


class ImageGeneration(_Images):
    api = "openai.images.generate"
    operation = semconv.OP_IMAGE_GENERATION
    suffixes = ("/images/generations",)
    event_prefix = "image_generation"


class ImageEdit(_Images):
    api = "openai.images.edit"
    operation = semconv.OP_IMAGE_EDIT
    suffixes = ("/images/edits",)
    event_prefix = "image_edit"


# --- speech ------------------------------------------------------------------------------------------------


class Speech(_Media):
    api = "openai.audio.speech"
    operation = semconv.OP_TEXT_TO_SPEECH
    suffixes = ("/audio/speech",)
    markers = parsed = (b"speech.audio.done", b'"error"')

    def streams(self, body: Mapping[str, Any], path: str) -> bool:
        return body.get("stream_format") == "sse"

    def read_request(self, body: Mapping[str, Any], path: str, *, keep_body: bool) -> Request | None:
        request = super().read_request(body, path, keep_body=keep_body)
        text = body.get("input")
        if request is not None and request.model.startswith(_PER_CHARACTER) and isinstance(text, str):
            request.usage = Usage(extra={"input_characters": len(text)})
        return request

    def read_body(self, answer: Answer, body: bytes, *, capture: bool) -> None:
        """Audio bytes (nothing to read), or SSE events that the SDK read whole."""
        if body.startswith((b"data:", b"event:")):
            for event in events(body.replace(b"\r\n", b"\n")):
                self.read_event(answer, event, capture=capture)
        else:
            super().read_body(answer, body, capture=capture)

    def on_typed_event(self, answer: Answer, kind: str, data: Mapping[str, Any], *, capture: bool) -> None:
        if kind == "speech.audio.done":
            answer.saw_end = True
            usage = data.get("usage")
            if isinstance(usage, Mapping):
                answer.usage = usage_from(usage)


# --- transcriptions and translations ------------------------------------------------------------------------


def audio_usage(usage: Mapping[str, Any]) -> Usage:
    """A transcription's `usage`: `{"type": "tokens", ...}` or `{"type": "duration", "seconds": N}`."""
    if usage.get("type") == "duration":
        return Usage(extra=_seconds(usage.get("seconds")))
    prompt = count(usage.get("input_tokens"))
    completion = count(usage.get("output_tokens"))
    audio = count(details(usage, "input_token_details").get("audio_tokens"))
    total = count(usage.get("total_tokens")) or prompt + completion
    return Usage(input=prompt, output=completion, total=total, input_audio=min(audio, prompt))


def _seconds(value: Any) -> dict[str, int]:
    """Billed audio seconds: a duration rounded to the second (half up)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return {}
    return {"audio_seconds": int(value + 0.5)}


class _AudioText(_Media):
    markers = parsed = (b"transcript.text.done", b'"error"')

    def read_whole(self, answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            answer.usage = audio_usage(usage)
        elif "duration" in data:  # verbose_json without usage
            answer.usage = Usage(extra=_seconds(data.get("duration")))
        if capture and isinstance(data.get("text"), str):
            answer.output.append(data["text"])

    def on_typed_event(self, answer: Answer, kind: str, data: Mapping[str, Any], *, capture: bool) -> None:
        if kind == "transcript.text.done":
            answer.saw_end = True
            usage = data.get("usage")
            if isinstance(usage, Mapping):
                answer.usage = audio_usage(usage)
        elif kind == "transcript.text.delta" and isinstance(data.get("delta"), str):
            answer.output.append(data["delta"])


class Transcription(_AudioText):
    api = "openai.audio.transcriptions"
    operation = semconv.OP_TRANSCRIPTION
    suffixes = ("/audio/transcriptions",)


class Translation(_AudioText):
    api = "openai.audio.translations"
    operation = semconv.OP_TRANSLATION
    suffixes = ("/audio/translations",)


IMAGE_GENERATION = ImageGeneration()
IMAGE_EDIT = ImageEdit()
SPEECH = Speech()
TRANSCRIPTION = Transcription()
TRANSLATION = Translation()
ENDPOINTS = (IMAGE_GENERATION, IMAGE_EDIT, SPEECH, TRANSCRIPTION, TRANSLATION)
