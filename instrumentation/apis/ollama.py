"""Ollama's native API: `/api/chat` and `/api/generate`. It streams newline-delimited JSON unless told not to;
the last object (`"done": true`) has the counts (`prompt_eval_count`, `eval_count`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import semconv
from ..usage import Usage, count
from ..wire import Event
from .base import Answer, PathEndpoint, Request, loads, read_params


def usage_from(body: Mapping[str, Any]) -> Usage:
    prompt = count(body.get("prompt_eval_count"))
    completion = count(body.get("eval_count"))
    return Usage(input=prompt, output=completion, total=prompt + completion)


class _Ollama(PathEndpoint):
    provider = "ollama"
    stream_framing = "ndjson"

    def streams(self, body: Mapping[str, Any], path: str) -> bool:
        stream = body.get("stream")
        return bool(stream) if stream is not None else True  # streams unless told not to

    def read_params(self, body: Mapping[str, Any], request: Request) -> None:
        options = body.get("options")
        if isinstance(options, Mapping):
            read_params(options, request.attributes)
            if isinstance(options.get("num_predict"), int):
                request.attributes[semconv.REQUEST_MAX_TOKENS] = options["num_predict"]
        else:
            read_params(body, request.attributes)

    def read_body(self, answer: Answer, body: bytes, *, capture: bool) -> None:
        for line in body.splitlines() if body.count(b"\n") > 1 else (body,):
            data = loads(line)
            if data is not None:
                self._object(answer, data, capture)

    def read_whole(self, answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
        self._object(answer, data, capture)

    def read_event(self, answer: Answer, event: Event, *, capture: bool) -> bool:
        line = event.data
        if capture or answer.response_model is None or (b'"done"' in line and b"true" in line):
            data = loads(line)
            if data is not None:
                self._object(answer, data, capture)
        return True

    def on_event(self, answer: Answer, name: str, data: Mapping[str, Any], *, capture: bool) -> None:
        self._object(answer, data, capture)

    def _object(self, answer: Answer, data: Mapping[str, Any], capture: bool) -> None:
        model = data.get("model")
        if isinstance(model, str):
            answer.response_model = model
        if capture:
            message = data.get("message")
            said = message.get("content") if isinstance(message, Mapping) else data.get("response")
            if isinstance(said, str) and said:
                answer.output.append(said)
        if isinstance(data.get("error"), str):
            answer.fail("stream_error", data["error"])
        if data.get("done") is True:
            answer.saw_end = True
            reason = data.get("done_reason")
            answer.finish_reasons = [reason if isinstance(reason, str) else "stop"]
            answer.usage = usage_from(data)


class Chat(_Ollama):
    api = "ollama.chat"
    operation = "chat"
    suffixes = ("/api/chat",)


class Generate(_Ollama):
    api = "ollama.generate"
    operation = "text_completion"
    suffixes = ("/api/generate",)


CHAT = Chat()
GENERATE = Generate()
ENDPOINTS = (CHAT, GENERATE)
