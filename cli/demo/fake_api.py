"""The interface of the fake provider's pluggable APIs: one module per provider API (`fake_gemini`,
`fake_bedrock`, ...) gives its routes, its error bodies and its answer headers; `fake_provider` serves them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

JSONDict = dict[str, Any]


@dataclass
class Ctx:
    """One request as a handler sees it: its path (no query), the model it names (`fake-model` when none), the
    number of content deltas to stream (`x-fake-chunks`), the delay between streamed chunks, its lower-case
    headers, its query string and its raw body (multipart bodies are not parsed into `req`)."""

    route: str
    model: str
    chunks: int
    delay: float
    headers: dict[str, str] = field(default_factory=dict)
    query: str = ""
    body: bytes = b""


class Reply(Protocol):
    """How a handler answers."""

    def json(self, payload: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """A whole JSON answer."""

    def raw(self, content_type: str, data: bytes, *, headers: dict[str, str] | None = None) -> None:
        """A whole answer of another type (audio bytes, plain text)."""

    def stream(self, content_type: str, chunks: list[bytes], *, headers: dict[str, str] | None = None) -> None:
        """A chunked answer, one HTTP chunk per item, `Ctx.delay` seconds apart."""


Handler = Callable[[JSONDict, Ctx, Reply], None]


@dataclass(frozen=True)
class FakeAPI:
    """One provider API the fake provider speaks."""

    name: str
    routes: tuple[tuple[str, Handler], ...]  # path suffix -> handler, first match wins
    error: Callable[[int, str | None], tuple[JSONDict, dict[str, str]]]  # (status, message) -> body, headers
    headers: Callable[[], dict[str, str]] = dict  # headers of every answer (request ids...)

    def handler(self, route: str) -> Handler | None:
        return next((fn for suffix, fn in self.routes if route.endswith(suffix)), None)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def sse(obj: Any, event: str | None = None) -> bytes:
    """One Server-Sent Event carrying `obj` as JSON (named when `event` is given)."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + dumps(obj) + b"\n\n"
