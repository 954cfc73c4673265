"""OpenAI's Responses API: a response object, whole or in `response.*` events (the final one carries usage)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Answer, PathEndpoint, ids, tier
from .openai import usage_from


class Responses(PathEndpoint):
    api = "openai.responses"
    operation = "chat"
    suffixes = ("/responses",)
    reports_openai_tier = True
    markers = (b"response.created", b"response.completed", b"response.failed", b"response.incomplete", b"error")
    events = frozenset(markers)
    text_events = frozenset({b"response.output_text.delta"})

    def read_whole(self, answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
        ids(answer, data)
        tier(answer, data.get("service_tier"))
        status = data.get("status")
        if isinstance(status, str) and status not in ("in_progress", "queued"):
            incomplete = data.get("incomplete_details")
            reason = incomplete.get("reason") if isinstance(incomplete, Mapping) else None
            answer.finish_reasons = [reason if isinstance(reason, str) else status]
            answer.saw_end = True
        error = data.get("error")
        if isinstance(error, Mapping):
            answer.fail(error.get("code") or error.get("type") or "response_failed", error.get("message", ""))
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            answer.usage = usage_from(usage)
        if capture and not answer.output:
            for item in data.get("output") or ():
                for part in item.get("content") or () if isinstance(item, Mapping) else ():
                    if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                        answer.output.append(part["text"])

    def on_event(self, answer: Answer, name: str, data: Mapping[str, Any], *, capture: bool) -> None:
        kind = data.get("type")
        if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
            answer.output.append(data["delta"])
        elif kind == "error":
            answer.fail(data.get("code") or "stream_error", data.get("message", ""))
        elif isinstance(data.get("response"), Mapping):
            self.read_whole(answer, data["response"], capture=capture and not answer.output)


RESPONSES = Responses()
ENDPOINTS = (RESPONSES,)
