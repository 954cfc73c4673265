"""Reads one attempt's answer as it passes: a whole body, or a stream framed as Server-Sent Events, NDJSON or an
AWS event stream. It knows framing only; what the events mean is the endpoint's (`apis`).

The streamed path hands every byte on as it comes and parses only the events that carry ids, finish reasons,
usage or errors (the endpoint's byte markers decide), unless content capture needs every delta.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

from .apis.base import Answer, Endpoint
from .wire import Event, EventStreamSplitter, LineSplitter, SSESplitter, events

MAX_BUFFERED_BODY = 8 * 1024 * 1024


class ResponseReader:
    """Collects what one answer says into `answer`, for `endpoint`."""

    __slots__ = (
        "_body",
        "_eventstream",
        "_lines",
        "_plain_sse",
        "_sse",
        "answer",
        "capture",
        "drop_usage_chunk",
        "endpoint",
    )

    def __init__(self, endpoint: Endpoint, *, capture: bool = False, drop_usage_chunk: bool = False) -> None:
        self.endpoint = endpoint
        self.capture = capture
        self.drop_usage_chunk = drop_usage_chunk  # hide the usage-only chunk llmtally asked for itself
        self.answer = Answer()
        self._sse: SSESplitter | None = None
        self._plain_sse: tuple[bytes, ...] = ()  # the endpoint's content-only chunk tails, when they can be skipped
        self._lines: LineSplitter | None = None
        self._eventstream: EventStreamSplitter | None = None
        self._body: list[bytes] | None = None

    # Whole bodies -------------------------------------------------------------------------------------------

    def read_body(self, body: bytes, status: int) -> None:
        """Reads a complete body (a non-streamed answer, or an error answer)."""
        if status >= 400:
            self.endpoint.read_error(self.answer, body)
        else:
            self.endpoint.read_body(self.answer, body, capture=self.capture)

    # Answers an SDK hook has already parsed ---------------------------------------------------------------

    def read_object(self, data: Mapping[str, Any]) -> None:
        """A whole answer, parsed."""
        self.answer.saw_end = True
        self.endpoint.read_whole(self.answer, data, capture=self.capture)

    def read_parsed_event(self, name: str, data: Mapping[str, Any]) -> None:
        """One streamed event, parsed."""
        if self.answer.first_chunk_ns is None:
            self.answer.first_chunk_ns = time.time_ns()
        self.endpoint.on_event(self.answer, name, data, capture=self.capture)

    # Streamed bodies ----------------------------------------------------------------------------------------

    def start_stream(self, content_type: str, status: int) -> None:
        """Chooses how to split the body that follows, from the answer's status and content type."""
        endpoint = self.endpoint
        if status >= 400:
            self._body = []
        elif "text/event-stream" in content_type:
            self._sse = SSESplitter()
            self._plain_sse = () if self.capture else getattr(endpoint, "plain_tails", ())
        elif "ndjson" in content_type or (endpoint.stream_framing == "ndjson" and "json" not in content_type):
            self._lines = LineSplitter()
        elif "amazon.eventstream" in content_type:
            with contextlib.suppress(ImportError):  # no botocore: unread (usage is then reported as missing)
                self._eventstream = EventStreamSplitter()
        elif "json" in content_type or content_type.startswith("text/") or not content_type:
            self._body = []
        # Anything else (audio, images) is the app's alone: passed on unread.

    def feed(self, chunk: bytes) -> bytes:
        """Reads one streamed chunk; returns the bytes to hand on (all, unless the injected usage chunk is hidden).

        The hot path of a stream: most chunks carry only content deltas, which a few byte searches tell, and
        such a chunk is not parsed.
        """
        answer = self.answer
        if answer.first_chunk_ns is None:
            answer.first_chunk_ns = time.time_ns()
        sse = self._sse
        if sse is not None:
            tails = self._plain_sse
            if (
                tails
                and chunk.endswith(tails)  # the usual chunk: one content-only event, passed over
                and not sse.pending
                and answer.response_id is not None
                and chunk.startswith(b"data:")
                and chunk.find(b"\n") == len(chunk) - 2  # one event of one line (so no CR line ends either)
                and chunk.count(b'"finish_reason"') == 1
                and b'"error"' not in chunk
            ):
                return chunk
            block = sse.feed(chunk)
            if block and (self.capture or answer.response_id is None or self._marked(block)):
                kept = self._events(block)
                if self.drop_usage_chunk:
                    return kept
            return block if self.drop_usage_chunk else chunk
        if self._lines is not None:
            self._read_lines(self._lines.feed(chunk))
        elif self._eventstream is not None:
            endpoint, capture = self.endpoint, self.capture
            for event in self._eventstream.feed(chunk):
                endpoint.read_event(answer, event, capture=capture)
        elif self._body is not None:
            self._body.append(chunk)
            if sum(len(part) for part in self._body) > MAX_BUFFERED_BODY:
                self._body = None  # too large to read; usage is then reported as missing
        return chunk

    def _marked(self, block: bytes) -> bool:
        tails = self._plain_sse
        if (
            tails
            and block.endswith(tails)  # the usual block: one content-only chunk, told in 4 tests
            and block.find(b"\n\n") == len(block) - 2
            and block.count(b'"finish_reason"') == 1
            and b'"error"' not in block
        ):
            return False
        markers = self.endpoint.markers
        if not markers:
            return True
        for marker in markers:  # noqa: SIM110 (a plain loop: cheaper than any() over a generator)
            if marker in block:
                return True
        return False

    def _events(self, block: bytes) -> bytes:
        """Reads a block of complete events; returns the raw bytes of those the app is to see."""
        endpoint, answer, capture, drop = self.endpoint, self.answer, self.capture, self.drop_usage_chunk
        kept: list[bytes] = []
        for event in events(block):
            if (not event.data or endpoint.read_event(answer, event, capture=capture)) or not drop:
                kept.append(event.raw)
        return b"".join(kept)

    def _read_lines(self, lines: list[bytes]) -> None:
        endpoint, answer, capture = self.endpoint, self.answer, self.capture
        for line in lines:
            endpoint.read_event(answer, _line_event(line), capture=capture)

    def end_stream(self, status: int) -> bytes:
        """The body has ended: reads what was held back; returns held-back bytes still to hand on."""
        rest = b""
        if self._sse is not None:
            kept = self._events(self._sse.flush())
            rest = kept if self.drop_usage_chunk else b""
        elif self._lines is not None:
            self._read_lines(self._lines.feed(b"\n"))
        elif self._body is not None:
            self.read_body(b"".join(self._body), status)
            self._body = None
        return rest


def _line_event(line: bytes) -> Event:
    return Event(line, b"", line)
