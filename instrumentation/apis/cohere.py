"""Cohere's v2 API: chat (`/v2/chat`, streamed when the body says `"stream": true`), embed (`/v2/embed`) and
rerank (`/v2/rerank`).

Cohere reports two counts: `billed_units` (what it bills) and `tokens` (what the model saw, its prompt template
included). Usage here is the billed one, which costs are computed from, as genai-prices' Cohere extractor does;
`cached_tokens` are the cache reads (at most the billed input); an answer without `billed_units` has no known
usage. Rerank bills searches (`meta.billed_units.search_units`), kept as `rerank_searches`. Streams are named SSE
events: `message-start` has the id, `message-end` the finish reason, the usage or the error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import semconv
from ..usage import Usage
from .base import Answer, PathEndpoint, Request, ids, read_params

# Cohere's request fields -> span attributes (its `p` and `k` are top_p and top_k).
PARAMS: tuple[tuple[str, str], ...] = (
    ("temperature", semconv.REQUEST_TEMPERATURE),
    ("p", semconv.REQUEST_TOP_P),
    ("k", semconv.REQUEST_TOP_K),
    ("max_tokens", semconv.REQUEST_MAX_TOKENS),
    ("seed", semconv.REQUEST_SEED),
    ("frequency_penalty", semconv.REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", semconv.REQUEST_PRESENCE_PENALTY),
)


def units(value: Any) -> int:
    """A billed count: Cohere's SDK types them as numbers, so a whole float counts too."""
    if type(value) is int:
        return max(value, 0)
    if type(value) is float and value.is_integer():
        return max(int(value), 0)
    return 0


def billed(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The `billed_units` of a `usage` or `meta` object (None without: then nothing is known to be billed)."""
    found = meta.get("billed_units")
    return found if isinstance(found, Mapping) else None


def usage_from(usage: Mapping[str, Any]) -> Usage | None:
    """A chat answer's `usage`: the billed counts, with the cached prompt tokens as cache reads."""
    counts = billed(usage)
    if counts is None:
        return None
    prompt = units(counts.get("input_tokens"))
    completion = units(counts.get("output_tokens"))
    return Usage(
        input=prompt,
        output=completion,
        total=prompt + completion,
        cache_read=min(units(usage.get("cached_tokens")), prompt),
    )


class _Cohere(PathEndpoint):
    provider = "cohere"

    def read_params(self, body: Mapping[str, Any], request: Request) -> None:
        read_params(body, request.attributes, PARAMS, stop_keys=("stop_sequences",))

    def read_whole(self, answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
        ids(answer, data)
        meta = data.get("meta")
        counts = billed(meta) if isinstance(meta, Mapping) else None
        if counts is not None:
            answer.usage = self.meta_usage(counts)

    def meta_usage(self, counts: Mapping[str, Any]) -> Usage:
        """Usage from `meta.billed_units` (embed and rerank answers)."""
        prompt = units(counts.get("input_tokens"))
        return Usage(input=prompt, total=prompt)


class Chat(_Cohere):
    api = "cohere.chat"
    operation = "chat"
    suffixes = ("/v2/chat",)
    markers = (b"message-start", b"message-end")
    events = frozenset({b"message-start", b"message-end"})
    text_events = frozenset({b"content-delta"})

    def read_whole(self, answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
        ids(answer, data)
        self._end(answer, data)
        if capture:
            message = data.get("message")
            for part in message.get("content") or () if isinstance(message, Mapping) else ():
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    answer.output.append(part["text"])

    def on_event(self, answer: Answer, name: str, data: Mapping[str, Any], *, capture: bool) -> None:
        kind = data.get("type")
        delta = data.get("delta")
        delta = delta if isinstance(delta, Mapping) else {}
        if kind == "message-start":
            ids(answer, data)
        elif kind == "message-end":
            answer.saw_end = True
            self._end(answer, delta)
        elif kind == "content-delta" and capture:
            message = delta.get("message")
            part = message.get("content") if isinstance(message, Mapping) else None
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                answer.output.append(part["text"])

    def _end(self, answer: Answer, data: Mapping[str, Any]) -> None:
        """The end of a message: a whole answer, or a stream's `message-end` delta."""
        reason = data.get("finish_reason")
        if isinstance(reason, str):
            answer.finish_reasons = [reason]
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            answer.usage = usage_from(usage) or answer.usage
        error = data.get("error")
        if isinstance(error, str) and error:
            answer.fail("stream_error", error)


class Embed(_Cohere):
    api = "cohere.embed"
    operation = "embeddings"
    suffixes = ("/v2/embed",)

    def read_params(self, body: Mapping[str, Any], request: Request) -> None:
        super().read_params(body, request)
        kinds = body.get("embedding_types")
        if isinstance(kinds, list) and kinds and all(isinstance(k, str) for k in kinds):
            request.attributes[semconv.REQUEST_ENCODING_FORMATS] = list(kinds)


class Rerank(_Cohere):
    api = "cohere.rerank"
    operation = semconv.OP_RERANK
    suffixes = ("/v2/rerank",)

    def meta_usage(self, counts: Mapping[str, Any]) -> Usage:
        usage = super().meta_usage(counts)
        searches = units(counts.get("search_units"))
        if searches:
            usage.extra["rerank_searches"] = searches
        return usage


CHAT = Chat()
EMBED = Embed()
RERANK = Rerank()
ENDPOINTS = (CHAT, EMBED, RERANK)
