"""Anthropic's Messages API, on Anthropic's own hosts and on Google Vertex AI (`:rawPredict` /
`:streamRawPredict` of a `publishers/anthropic` model, the same bodies; named `gcp.vertex_ai` whatever the host,
a gateway's included).

Its `input_tokens` excludes cache reads and cache writes, which are added in (the semconv's input). Cache writes
split by lifetime under `cache_creation`; web searches under `server_tool_use.web_search_requests`. Streams are
named SSE events: `message_start` has the id, model and first usage; each `message_delta` adds to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import semconv
from ..usage import Usage, count, details
from .base import Answer, Endpoint, Request, ids, present, read_params, tier

_VERTEX_MARKER = "/publishers/anthropic/models/"


def usage_from(usage: Mapping[str, Any]) -> Usage:
    """Anthropic Messages usage in the semconv's shape."""
    read = count(usage.get("cache_read_input_tokens"))
    creation = details(usage, "cache_creation")
    write_1h = count(creation.get("ephemeral_1h_input_tokens"))
    write_5m = count(creation.get("ephemeral_5m_input_tokens"))
    write = count(usage.get("cache_creation_input_tokens")) or write_5m + write_1h
    prompt = count(usage.get("input_tokens")) + read + write
    completion = count(usage.get("output_tokens"))
    searches = count(details(usage, "server_tool_use").get("web_search_requests"))
    return Usage(
        input=prompt,
        output=completion,
        total=prompt + completion,
        cache_read=read,
        cache_write=write,
        cache_write_1h=min(write_1h, write),
        web_searches=searches,
    )


def read_message(answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
    """A whole message (an answer, or the one in `message_start`)."""
    ids(answer, data)
    reason = data.get("stop_reason")
    if isinstance(reason, str):
        answer.finish_reasons = [reason]
    usage = data.get("usage")
    if isinstance(usage, Mapping):
        add_usage(answer, usage)
    if capture:
        for block in data.get("content") or ():
            if isinstance(block, Mapping) and isinstance(block.get("text"), str):
                answer.output.append(block["text"])


def read_stream_event(answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
    """One streamed event object (also the chunks of Bedrock's invoke streams for Claude)."""
    kind = data.get("type")
    if kind == "message_start" and isinstance(data.get("message"), Mapping):
        read_message(answer, data["message"], capture=capture)
    elif kind == "message_delta":
        delta = data.get("delta")
        if isinstance(delta, Mapping) and isinstance(delta.get("stop_reason"), str):
            answer.finish_reasons = [delta["stop_reason"]]
        if isinstance(data.get("usage"), Mapping):
            add_usage(answer, data["usage"])
    elif kind == "content_block_delta":
        delta = data.get("delta")
        if isinstance(delta, Mapping) and isinstance(delta.get("text"), str):
            answer.output.append(delta["text"])
    elif kind == "error" and isinstance(data.get("error"), Mapping):
        answer.fail(data["error"].get("type"), data["error"].get("message", ""))
    elif kind == "message_stop":
        answer.saw_end = True


def add_usage(answer: Answer, usage: Mapping[str, Any]) -> None:
    """One usage object (a message's, or a stream's `message_start` then `message_delta` parts, each adding to
    the last): the counts so far, and the tier and speed that served the request."""
    answer.partial = {**(answer.partial or {}), **present(usage)}
    answer.usage = usage_from(answer.partial)
    tier(answer, usage.get("service_tier"))
    speed = usage.get("speed")
    if isinstance(speed, str) and speed:
        answer.speed = speed


def read_anthropic_params(body: Mapping[str, Any], request: Request) -> None:
    """The Messages API's parameters (OpenAI's names where they agree) and its `speed`."""
    read_params(body, request.attributes)
    speed = body.get("speed")
    if isinstance(speed, str) and speed:
        request.attributes[semconv.REQUEST_SPEED] = speed


class Messages(Endpoint):
    api = "anthropic"
    operation = "chat"
    provider = "anthropic"
    markers = (b"message_start", b"message_delta", b"message_stop", b"error")
    events = frozenset({b"message_start", b"message_delta", b"message_stop", b"error"})
    text_events = frozenset({b"content_block_delta"})

    def matches(self, path: str) -> bool:
        return path.endswith("/messages")

    def read_params(self, body: Mapping[str, Any], request: Request) -> None:
        read_anthropic_params(body, request)

    def read_whole(self, answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
        read_message(answer, data, capture=capture)

    def on_event(self, answer: Answer, name: str, data: Mapping[str, Any], *, capture: bool) -> None:
        read_stream_event(answer, data, capture=capture)


class VertexMessages(Messages):
    """Claude on Vertex AI: the model is named in the path, the stream by the path's method too."""

    api = "anthropic.vertex"
    provider = "gcp.vertex_ai"

    def matches(self, path: str) -> bool:
        return _VERTEX_MARKER in path and path.endswith((":rawPredict", ":streamRawPredict"))

    def model_of(self, body: Mapping[str, Any], path: str) -> str:
        model = body.get("model")
        if isinstance(model, str):
            return model
        return path.split(_VERTEX_MARKER, 1)[1].split(":", 1)[0]

    def streams(self, body: Mapping[str, Any], path: str) -> bool:
        return bool(body.get("stream")) or path.endswith(":streamRawPredict")


MESSAGES = Messages()
VERTEX_MESSAGES = VertexMessages()
ENDPOINTS = (MESSAGES, VERTEX_MESSAGES)
