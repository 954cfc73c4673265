"""GET /api/v1/requests/stream: the live feed as Server-Sent Events (`feed.py` is its engine)."""

# No `from __future__ import annotations`: FastAPI reads the route signatures' types as objects.
import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, HTTPException, Query, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..store import StoreError
from .auth import Principal
from .feed import BadPosition, Feed, Full, Position, Subscriber, matcher
from .params import LOG_STATUSES, Filters
from .reports import request_summary

MEDIA_TYPE = "text/event-stream"
_INCOMPLETE = "ASGI callable returned without completing response."


class _DroppedStreams(logging.Filter):
    """Keeps uvicorn from logging an error for each stream this module cut on purpose (a client too slow: the feed
    already said so), and only for those."""

    def __init__(self) -> None:
        super().__init__()
        self.expected = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            if record.msg == _INCOMPLETE and self.expected > 0:
                self.expected -= 1
                return False
        return True

    def expect(self) -> None:
        with self._lock:
            self.expected += 1


_dropped = _DroppedStreams()
logging.getLogger("uvicorn.error").addFilter(_dropped)
_TICK_S = 0.5  # how often an idle stream looks whether the server is shutting down


class EventStream(Response):
    """The SSE answer of one subscriber: catch-up, then live events and heartbeats, until the client goes, is
    dropped (its buffer filled: the connection is closed) or the server shuts down (the answer ends)."""

    media_type = MEDIA_TYPE

    def __init__(self, feed: Feed, subscriber: Subscriber, start: Position) -> None:
        super().__init__(headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]  # chunked: no end known
        self.feed, self.subscriber, self.start = feed, subscriber, start

    async def _events(self, wake: asyncio.Event) -> AsyncIterator[bytes]:
        yield b": llmtally live feed\nretry: 1000\n\n"
        last = time.monotonic()
        if self.subscriber.resumed is not None:
            try:
                caught, more = await anyio.to_thread.run_sync(self._catch_up)
            except StoreError:  # the answer ends; the client comes back (Last-Event-ID) once the store answers
                return
            if caught:
                yield b"".join(caught)
            if more:  # further behind than one buffer: the client comes back for the rest (Last-Event-ID)
                return
        while not self.feed.closing and not self.subscriber.dropped:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), _TICK_S)
            wake.clear()
            items = self.subscriber.take()
            if items:
                yield b"".join(event(position, record) for _, position, record in items)
                last = time.monotonic()
            elif time.monotonic() - last >= self.feed.settings.heartbeat_seconds:
                yield b": keep-alive\n\n"
                last = time.monotonic()

    def _catch_up(self) -> tuple[list[bytes], bool]:
        """The events a resuming client missed, at most a buffer's worth; and whether there are more."""
        resumed = self.subscriber.resumed
        assert resumed is not None
        events: list[bytes] = []
        for position, record in self.feed.catch_up(resumed, self.start):
            if self.subscriber.matches(record):
                if len(events) >= self.subscriber.capacity:
                    return events, True
                events.append(event(position, record))
        return events, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wake = asyncio.Event()
        self.subscriber.attach(asyncio.get_running_loop(), wake)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            finished = False
            async with anyio.create_task_group() as group:

                async def pump() -> None:
                    nonlocal finished
                    async for chunk in self._events(wake):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    finished = True
                    group.cancel_scope.cancel()

                async def until_gone() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                async def until_dropped() -> None:
                    while not self.subscriber.dropped:
                        await asyncio.sleep(_TICK_S)
                    group.cancel_scope.cancel()  # even while a send waits for the client: the connection closes

                group.start_soon(pump)
                group.start_soon(until_gone)
                group.start_soon(until_dropped)
            if finished and not self.subscriber.dropped:  # shutting down, or a long catch-up: end the answer
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.feed.unsubscribe(self.subscriber)
            if self.subscriber.dropped:
                _dropped.expect()  # returning with the answer unfinished: uvicorn closes the connection


def event(position: Position, record: Any) -> bytes:
    data = json.dumps(request_summary(record), separators=(",", ":"), ensure_ascii=False)
    return f"id: {position.encode()}\nevent: request\ndata: {data}\n\n".encode()


_ERRORS = {
    400: "A bad parameter or Last-Event-ID (the message names it)",
    401: "No valid API token (when api.tokens are configured)",
    403: "A member token asking for another user's requests, or an app token",
    503: "Every stream slot is taken (stream.max_clients), or the audit store is unavailable (see Retry-After)",
}


def _json_error(description: str) -> dict[str, Any]:
    """An error answer: JSON, not the stream's media type."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def add_route(router: APIRouter, feed: Feed, asked: Any, who: Any, scoped: Callable[..., Filters]) -> None:
    """Adds /requests/stream to `router` (before /requests/{id}); `asked` and `who` are the request log's
    dependencies (filters, caller), `scoped` narrows a member's filters to their own requests."""

    @router.get(
        "/requests/stream",
        summary="The live feed: each request as it is stored, as Server-Sent Events (resumable: Last-Event-ID)",
        response_class=EventStream,
        status_code=200,
        responses={
            200: {"content": {MEDIA_TYPE: {}}, "description": "`event: request` per stored request"},
            **{status: _json_error(text) for status, text in _ERRORS.items()},
        },
    )
    def stream(
        request: Request,
        query: asked,
        caller: who,
        last_event_id: Annotated[
            str | None, Query(description="resume after this event id (as the Last-Event-ID header)")
        ] = None,
    ) -> EventStream:
        filters = query.checked_filters(LOG_STATUSES)
        filters = scoped(filters, caller if isinstance(caller, Principal) else None)
        resume_text = request.headers.get("last-event-id") or last_event_id
        try:
            resumed = Position.decode(resume_text) if resume_text else None
        except BadPosition as error:
            raise HTTPException(400, str(error)) from None
        subscriber = Subscriber(matcher(filters), feed.settings.client_buffer_records, resumed)
        try:
            start = feed.subscribe(subscriber)
        except Full as error:
            raise HTTPException(503, f"{error}: try again later", headers={"Retry-After": "5"}) from None
        return EventStream(feed, subscriber, start)
