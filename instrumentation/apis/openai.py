"""OpenAI's Chat Completions, legacy Completions and Embeddings: also the shape every OpenAI-compatible API speaks
(OpenRouter, Groq, Together, Mistral, DeepSeek, xAI, Fireworks, vLLM, Azure OpenAI deployments...).

Usage is read where each of them puts it: top-level `usage` (with OpenAI's `*_details`, DeepSeek's
`prompt_cache_hit_tokens`, the `cache_write_tokens` detail of OpenRouter and others), else Groq's `x_groq.usage`
(the last chunk of its streams). Streams are Server-Sent Events ending in `data: [DONE]`; most chunks carry only a
content delta, which a few byte tests tell without parsing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import semconv
from ..usage import Usage, count, details
from ..wire import Event
from .base import Answer, PathEndpoint, Request, ids, loads, tier

_NULLS = (b'"usage":null', b'"usage": null')


def usage_from(usage: Mapping[str, Any]) -> Usage:
    """Chat/legacy completions (`prompt_tokens`...), Responses (`input_tokens`...) and embeddings usage.

    Audio tokens (`prompt_tokens_details.audio_tokens`, `completion_tokens_details.audio_tokens`) are kept apart,
    and so are the image tokens of the image models (`input_tokens_details.image_tokens`).
    """
    get = usage.get
    prompt = count(get("prompt_tokens")) or count(get("input_tokens"))
    completion = count(get("completion_tokens")) or count(get("output_tokens"))
    prompt_details = details(usage, "prompt_tokens_details")
    input_details = details(usage, "input_tokens_details")
    cached = (
        count(prompt_details.get("cached_tokens"))
        or count(input_details.get("cached_tokens"))
        or count(get("prompt_cache_hit_tokens"))
    )
    cache_write = (
        count(prompt_details.get("cache_write_tokens"))
        or count(prompt_details.get("cache_creation_input_tokens"))
        or count(input_details.get("cache_write_tokens"))
    )
    completion_details = details(usage, "completion_tokens_details")
    output_details = details(usage, "output_tokens_details")
    reasoning = count(completion_details.get("reasoning_tokens")) or count(output_details.get("reasoning_tokens"))
    input_audio = count(prompt_details.get("audio_tokens")) or count(input_details.get("audio_tokens"))
    output_audio = count(completion_details.get("audio_tokens")) or count(output_details.get("audio_tokens"))
    total = count(get("total_tokens")) or prompt + completion
    found = Usage(
        input=prompt,
        output=completion,
        total=total,
        cache_read=cached,
        cache_write=cache_write,
        reasoning=reasoning,
        input_audio=input_audio,
        output_audio=output_audio,
    )
    input_images = count(input_details.get("image_tokens"))
    if input_images:
        found.extra["input_image_tokens"] = input_images
    output_images = count(output_details.get("image_tokens"))
    if output_images:
        found.extra["output_image_tokens"] = output_images
    return found


def model_or_deployment(body: Mapping[str, Any], path: str) -> str:
    """The body's model, else the Azure OpenAI deployment in the path, which stands for the model there."""
    model = body.get("model")
    if isinstance(model, str):
        return model
    marker = "/deployments/"
    return path.split(marker, 1)[1].split("/", 1)[0] if marker in path else ""


class _OpenAIShape(PathEndpoint):
    """Chat Completions, Completions and Embeddings objects, whole or streamed."""

    usage_option = True
    reports_openai_tier = True
    markers = (b'"usage":{', b'"usage": {', b'"finish_reason":"', b'"finish_reason": "', b'"error"', b"[DONE]")
    # How a chat chunk that carries only a content delta ends (usage off, or asked for and still null).
    plain_tails = (b'"finish_reason":null}],"usage":null}\n\n', b'"finish_reason":null}]}\n\n')
    delta_key = "delta"

    def model_of(self, body: Mapping[str, Any], path: str) -> str:
        return model_or_deployment(body, path)

    def read_whole(self, answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
        self._object(answer, data, "message", capture)

    def read_event(self, answer: Answer, event: Event, *, capture: bool) -> bool:
        data = event.data
        if data == b"[DONE]":
            answer.saw_end = True
            return True
        if (
            capture
            or answer.response_id is None
            or (b'"usage"' in data and (b'"x_groq"' in data or not any(n in data for n in _NULLS)))
            or b'"finish_reason":"' in data  # a choice finished (another one in the same chunk may not have)
            or b'"finish_reason": "' in data
            or b'"error"' in data
        ):
            obj = loads(data)
            if obj is not None:
                self._object(answer, obj, "delta", capture)
                if obj.get("choices") == [] and obj.get("usage"):
                    return False  # the usage-only chunk: hidden when llmtally asked for it
        return True

    def on_event(self, answer: Answer, name: str, data: Mapping[str, Any], *, capture: bool) -> None:
        self._object(answer, data, "delta", capture)

    def _object(self, answer: Answer, data: Mapping[str, Any], part_key: str, capture: bool) -> None:
        ids(answer, data)  # Azure's first streamed chunk (its prompt filter results) has an empty id
        tier(answer, data.get("service_tier"))
        error = data.get("error")
        if isinstance(error, Mapping):
            answer.fail(error.get("type") or error.get("code"), error.get("message", ""))
        choices = data.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if not isinstance(choice, Mapping):
                    continue
                reason = choice.get("finish_reason")
                if isinstance(reason, str):
                    answer.finish_reasons.append(reason)
                if capture:
                    part = choice.get(part_key)
                    said = part.get("content") if isinstance(part, Mapping) else choice.get("text")
                    if isinstance(said, str) and said:
                        answer.output.append(said)
        usage = data.get("usage")
        if not isinstance(usage, Mapping):
            extra = data.get("x_groq")
            usage = extra.get("usage") if isinstance(extra, Mapping) else None
        if isinstance(usage, Mapping):
            answer.usage = usage_from(usage)
            answer.saw_end = True


class Chat(_OpenAIShape):
    api = "openai.chat"
    operation = "chat"
    suffixes = ("/chat/completions",)


class Completions(_OpenAIShape):
    api = "openai.completions"
    operation = "text_completion"
    suffixes = ("/completions",)


class Embeddings(_OpenAIShape):
    api = "openai.embeddings"
    operation = "embeddings"
    usage_option = False
    suffixes = ("/embeddings",)

    def read_request(self, body: Mapping[str, Any], path: str, *, keep_body: bool) -> Request | None:
        request = super().read_request(body, path, keep_body=keep_body)
        if request is not None:
            encoding = body.get("encoding_format")
            if isinstance(encoding, str):
                request.attributes[semconv.REQUEST_ENCODING_FORMATS] = [encoding]
        return request


CHAT = Chat()
COMPLETIONS = Completions()
EMBEDDINGS = Embeddings()
ENDPOINTS = (CHAT, COMPLETIONS, EMBEDDINGS)
