"""What a response says, read from its body: whole JSON, Server-Sent Events or NDJSON.

One reader per response. The streamed path parses only the events that carry ids, finish reasons, usage or
errors (cheap byte checks decide), unless content capture needs every delta.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from . import usage as usage_mod
from .usage import Usage
from .wire import Event, LineSplitter, SSESplitter, events

_NULLS = (b'"usage":null', b'"usage": null')
_RESPONSES_EVENTS = {
    b"response.created",
    b"response.completed",
    b"response.failed",
    b"response.incomplete",
    b"error",
}
_ANTHROPIC_EVENTS = {b"message_start", b"message_delta", b"error"}


# What a block of events must contain to be worth parsing, per API (plain `in` searches are the fastest test).
_OPENAI_MARKERS = (b'"usage":{', b'"usage": {', b'"finish_reason":"', b'"finish_reason": "', b'"error"', b"[DONE]")
_MARKERS = {
    "anthropic": (b"message_start", b"message_delta", b"message_stop", b"error"),
    "openai.responses": (
        b"response.created",
        b"response.completed",
        b"response.failed",
        b"response.incomplete",
        b"error",
    ),
}
# How an OpenAI chat chunk that carries only a content delta ends (usage off, or asked for and still null).
_PLAIN_OPENAI_TAILS = (b'"finish_reason":null}],"usage":null}\n\n', b'"finish_reason":null}]}\n\n')
MAX_ERROR_MESSAGE = 500
MAX_BUFFERED_BODY = 8 * 1024 * 1024


class ResponseReader:
    """Collects id, model, finish reasons, usage, errors and (if asked) output text of one response."""

    __slots__ = (
        "_anthropic_usage",
        "_body",
        "_lines",
        "_markers",
        "_plain_sse",
        "_sse",
        "api",
        "capture",
        "drop_usage_chunk",
        "error_message",
        "error_type",
        "finish_reasons",
        "first_chunk_ns",
        "output",
        "response_id",
        "response_model",
        "saw_end",
        "service_tier",
        "speed",
        "usage",
    )

    def __init__(self, api: str, *, capture: bool = False, drop_usage_chunk: bool = False) -> None:
        self.api = api
        self.capture = capture
        self.drop_usage_chunk = drop_usage_chunk
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.finish_reasons: list[str] = []
        self.usage: Usage | None = None
        self.service_tier: str | None = None  # the tier that served the answer, as the provider reports it
        self.speed: str | None = None  # the inference speed that served it, as the provider reports it (Anthropic)
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.output: list[str] = []
        self.first_chunk_ns: int | None = None
        self.saw_end = False
        self._anthropic_usage: dict[str, Any] | None = None
        self._markers = _MARKERS.get(api, _OPENAI_MARKERS)
        self._sse: SSESplitter | None = None
        self._plain_sse = False  # an OpenAI-style event stream read without content capture
        self._lines: LineSplitter | None = None
        self._body: list[bytes] | None = None

    # Whole bodies -------------------------------------------------------------------------------------------

    def read_body(self, body: bytes, status: int) -> None:
        """Reads a complete body (a non-streamed answer, or an error answer)."""
        if status >= 400:
            self._read_error(body)
            return
        if self.api == "ollama" and body.count(b"\n") > 1:
            for line in body.splitlines():
                self._ollama(_loads(line))
            return
        data = _loads(body)
        if data is None:
            return
        self.saw_end = True
        if self.api == "anthropic":
            self._anthropic_message(data)
        elif self.api == "ollama":
            self._ollama(data)
        elif self.api == "openai.responses":
            self._responses_object(data)
        else:
            self._openai_object(data, whole=True)

    def _read_error(self, body: bytes) -> None:
        data = _loads(body)
        message: Any = None
        kind: Any = None
        if isinstance(data, Mapping):
            err = data.get("error")
            if isinstance(err, Mapping):
                message, kind = err.get("message"), err.get("type") or err.get("code")
            elif isinstance(err, str):
                message = err
            elif isinstance(data.get("message"), str):
                message = data["message"]
        elif body:
            message = body[:MAX_ERROR_MESSAGE].decode("utf-8", "replace")
        if isinstance(message, str):
            self.error_message = message[:MAX_ERROR_MESSAGE]
        if isinstance(kind, str):
            self.error_type = kind

    # Streamed bodies ----------------------------------------------------------------------------------------

    def start_stream(self, content_type: str, status: int) -> None:
        """Chooses how to split the body that follows, from the answer's status and content type."""
        if status >= 400:
            self._body = []
        elif "text/event-stream" in content_type:
            self._sse = SSESplitter()
            self._plain_sse = self._markers is _OPENAI_MARKERS and not self.capture
        elif "ndjson" in content_type or (self.api == "ollama" and "json" not in content_type):
            self._lines = LineSplitter()
        else:
            self._body = []

    def feed(self, chunk: bytes) -> bytes:
        """Reads one streamed chunk; returns the bytes to hand on (all, unless the injected usage chunk is hidden).

        The hot path of a stream: most chunks carry only content deltas, which a few byte searches tell, and
        such a chunk is not parsed.
        """
        if self.first_chunk_ns is None:
            self.first_chunk_ns = time.time_ns()
        sse = self._sse
        if sse is not None:
            if (
                self._plain_sse
                and chunk.endswith(_PLAIN_OPENAI_TAILS)  # the usual chunk: one content-only event, passed over
                and not sse.pending
                and self.response_id is not None
                and chunk.startswith(b"data:")
                and chunk.find(b"\n") == len(chunk) - 2  # one event of one line (so no CR line ends either)
                and chunk.count(b'"finish_reason"') == 1
                and b'"error"' not in chunk
            ):
                return chunk
            block = sse.feed(chunk)
            if block and (self.capture or self.response_id is None or self._marked(block)):
                kept = [event.raw for event in events(block) if self._event(event)]
                if self.drop_usage_chunk:
                    return b"".join(kept)
            return block if self.drop_usage_chunk else chunk
        if self._lines is not None:
            for line in self._lines.feed(chunk):
                self._line(line)
        elif self._body is not None:
            self._body.append(chunk)
            if sum(len(part) for part in self._body) > MAX_BUFFERED_BODY:
                self._body = None  # too large to read; usage is then reported as missing
        return chunk

    def _marked(self, block: bytes) -> bool:
        if (
            block.endswith(_PLAIN_OPENAI_TAILS)  # the usual OpenAI block: one content-only chunk, told in 4 tests
            and self._markers is _OPENAI_MARKERS
            and block.find(b"\n\n") == len(block) - 2
            and block.count(b'"finish_reason"') == 1
            and b'"error"' not in block
        ):
            return False
        for marker in self._markers:  # noqa: SIM110 (a plain loop: cheaper than any() over a generator)
            if marker in block:
                return True
        return False

    def end_stream(self, status: int) -> bytes:
        """The body has ended: reads what was held back; returns held-back bytes still to hand on."""
        rest = b""
        if self._sse is not None:
            tail = self._sse.flush()
            kept = [event.raw for event in events(tail) if self._event(event)]
            rest = b"".join(kept) if self.drop_usage_chunk else b""
        elif self._lines is not None:
            for line in self._lines.feed(b"\n"):
                self._line(line)
        elif self._body is not None:
            self.read_body(b"".join(self._body), status)
            self._body = None
        return rest

    def _event(self, event: Event) -> bool:
        """Reads one event; returns False for an event to hide from the application."""
        data = event.data
        if not data or data == b"[DONE]":
            if data == b"[DONE]":
                self.saw_end = True
            return True
        api = self.api
        if api == "anthropic":
            name = event.name
            if name in _ANTHROPIC_EVENTS or (self.capture and name == b"content_block_delta") or not name:
                self._anthropic_event(_loads(data))
            elif name == b"message_stop":
                self.saw_end = True
        elif api == "openai.responses":
            name = event.name
            if name in _RESPONSES_EVENTS or not name or (self.capture and name == b"response.output_text.delta"):
                self._responses_event(_loads(data))
        elif (
            self.capture
            or self.response_id is None
            or (b'"usage"' in data and (b'"x_groq"' in data or not any(n in data for n in _NULLS)))
            or b'"finish_reason":"' in data  # a choice finished (another one in the same chunk may not have)
            or b'"finish_reason": "' in data
            or b'"error"' in data
        ):
            obj = _loads(data)
            if obj is not None:
                self._openai_object(obj, whole=False)
                if self.drop_usage_chunk and obj.get("choices") == [] and obj.get("usage"):
                    return False
        return True

    def _line(self, line: bytes) -> None:
        # Ollama's final line has `"done": true` and the counts; earlier ones say `"done": false`.
        if self.capture or self.response_model is None or (b'"done"' in line and b"true" in line):
            self._ollama(_loads(line))

    # Provider shapes ----------------------------------------------------------------------------------------

    def _openai_object(self, data: Mapping[str, Any], *, whole: bool) -> None:
        """A chat.completion(.chunk), text_completion or embeddings object.

        Usage is read where each OpenAI-compatible provider puts it: top-level `usage`, else Groq's `x_groq.usage`
        (the last chunk of its streams)."""
        self._ids(data)
        self._tier(data.get("service_tier"))
        error = data.get("error")
        if isinstance(error, Mapping):
            self.error_type = str(error.get("type") or error.get("code") or "stream_error")
            self.error_message = str(error.get("message", ""))[:MAX_ERROR_MESSAGE]
        choices = data.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if not isinstance(choice, Mapping):
                    continue
                reason = choice.get("finish_reason")
                if isinstance(reason, str):
                    self.finish_reasons.append(reason)
                if self.capture:
                    self._choice_text(choice, whole)
        usage = data.get("usage")
        if not isinstance(usage, Mapping):
            extra = data.get("x_groq")
            usage = extra.get("usage") if isinstance(extra, Mapping) else None
        if isinstance(usage, Mapping):
            self.usage = usage_mod.from_openai(usage)
            self.saw_end = True

    def _choice_text(self, choice: Mapping[str, Any], whole: bool) -> None:
        part = choice.get("message" if whole else "delta")
        text = part.get("content") if isinstance(part, Mapping) else choice.get("text")
        if isinstance(text, str) and text:
            self.output.append(text)

    def _responses_object(self, data: Mapping[str, Any]) -> None:
        self._ids(data)
        self._tier(data.get("service_tier"))
        status = data.get("status")
        if isinstance(status, str) and status not in ("in_progress", "queued"):
            details = data.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, Mapping) else None
            self.finish_reasons = [reason if isinstance(reason, str) else status]
            self.saw_end = True
        error = data.get("error")
        if isinstance(error, Mapping):
            self.error_type = str(error.get("code") or error.get("type") or "response_failed")
            self.error_message = str(error.get("message", ""))[:MAX_ERROR_MESSAGE]
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            self.usage = usage_mod.from_openai(usage)
        if self.capture and not self.output:
            for item in data.get("output") or ():
                for part in item.get("content") or () if isinstance(item, Mapping) else ():
                    if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                        self.output.append(part["text"])

    def _responses_event(self, data: Mapping[str, Any] | None) -> None:
        if data is None:
            return
        kind = data.get("type")
        if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
            self.output.append(data["delta"])
        elif kind == "error":
            self.error_type = str(data.get("code") or "stream_error")
            self.error_message = str(data.get("message", ""))[:MAX_ERROR_MESSAGE]
        elif isinstance(data.get("response"), Mapping):
            capture, self.capture = self.capture, self.capture and not self.output
            self._responses_object(data["response"])
            self.capture = capture

    def _anthropic_message(self, data: Mapping[str, Any]) -> None:
        self._ids(data)
        reason = data.get("stop_reason")
        if isinstance(reason, str):
            self.finish_reasons = [reason]
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            self._anthropic_usage_part(usage)
        if self.capture:
            for block in data.get("content") or ():
                if isinstance(block, Mapping) and isinstance(block.get("text"), str):
                    self.output.append(block["text"])

    def _anthropic_event(self, data: Mapping[str, Any] | None) -> None:
        if data is None:
            return
        kind = data.get("type")
        if kind == "message_start" and isinstance(data.get("message"), Mapping):
            self._anthropic_message(data["message"])
        elif kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, Mapping) and isinstance(delta.get("stop_reason"), str):
                self.finish_reasons = [delta["stop_reason"]]
            if isinstance(data.get("usage"), Mapping):
                self._anthropic_usage_part(data["usage"])
        elif kind == "content_block_delta":
            delta = data.get("delta")
            if isinstance(delta, Mapping) and isinstance(delta.get("text"), str):
                self.output.append(delta["text"])
        elif kind == "error" and isinstance(data.get("error"), Mapping):
            self.error_type = str(data["error"].get("type") or "stream_error")
            self.error_message = str(data["error"].get("message", ""))[:MAX_ERROR_MESSAGE]
        elif kind == "message_stop":
            self.saw_end = True

    def _ollama(self, data: Mapping[str, Any] | None) -> None:
        if data is None:
            return
        model = data.get("model")
        if isinstance(model, str):
            self.response_model = model
        if self.capture:
            message = data.get("message")
            text = message.get("content") if isinstance(message, Mapping) else data.get("response")
            if isinstance(text, str) and text:
                self.output.append(text)
        if isinstance(data.get("error"), str):
            self.error_type, self.error_message = "stream_error", data["error"][:MAX_ERROR_MESSAGE]
        if data.get("done") is True:
            self.saw_end = True
            reason = data.get("done_reason")
            self.finish_reasons = [reason if isinstance(reason, str) else "stop"]
            self.usage = usage_mod.from_ollama(data)

    def _tier(self, tier: Any) -> None:
        if isinstance(tier, str) and tier:
            self.service_tier = tier

    def _anthropic_usage_part(self, usage: Mapping[str, Any]) -> None:
        """One Anthropic usage object (a message's, or a stream's `message_start` then `message_delta` parts, each
        adding to the last): the counts so far, and the tier and speed that served the request."""
        self._anthropic_usage = {**(self._anthropic_usage or {}), **_present(usage)}
        self.usage = usage_mod.from_anthropic(self._anthropic_usage)
        self._tier(usage.get("service_tier"))
        speed = usage.get("speed")
        if isinstance(speed, str) and speed:
            self.speed = speed

    def _ids(self, data: Mapping[str, Any]) -> None:
        # Azure's first streamed chunk (its prompt filter results) has an empty id: the next chunk's is kept.
        if self.response_id is None and isinstance(data.get("id"), str) and data["id"]:
            self.response_id = data["id"]
        if isinstance(data.get("model"), str) and data["model"]:
            self.response_model = data["model"]


def _loads(data: bytes) -> Mapping[str, Any] | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, Mapping) else None


def _present(usage: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in usage.items() if v is not None}
