"""Response body wrappers that read a streamed answer as the application reads it."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from ..safety import log, quiet

if TYPE_CHECKING:
    from ..call import LLMCall
    from ..reader import ResponseReader


class _ObservedStream:
    """Hands the body on (less any hidden usage chunk) and ends the call when the body ends."""

    def __init__(self, inner: Any, call: LLMCall, reader: ResponseReader, status: int) -> None:
        self._inner = inner
        self._call = call
        self._reader = reader
        self._status = status
        self._done = False
        self._broken = False  # our reading failed: hand every byte on untouched from then on

    def _feed(self, chunk: bytes) -> bytes:
        if not self._broken:
            try:
                return self._reader.feed(chunk)
            except Exception:
                self._broken = True
                log.debug("llmtally could not read a streamed answer", exc_info=True)
        return chunk

    def _rest(self) -> bytes:
        if self._broken:
            return b""
        try:
            return self._reader.end_stream(self._status)
        except Exception:
            log.debug("llmtally could not read a streamed answer", exc_info=True)
            return b""

    @property
    def elapsed(self) -> Any:
        return getattr(self._inner, "elapsed", None)

    def __iter__(self) -> Iterator[bytes]:
        feed = self._reader.feed
        try:
            for chunk in self._inner:
                if not self._broken:
                    try:
                        chunk = feed(chunk)
                    except Exception:
                        self._broken = True
                        log.debug("llmtally could not read a streamed answer", exc_info=True)
                if chunk:
                    yield chunk
            rest = self._rest()
            if rest:
                yield rest
        except GeneratorExit:
            self._end("closed")
            raise
        except BaseException as error:
            self._end("failed", error)
            raise
        self._end("read")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                out = self._feed(chunk)
                if out:
                    yield out
            rest = self._rest()
            if rest:
                yield rest
        except GeneratorExit:
            self._end("closed")
            raise
        except BaseException as error:
            self._end("failed", error)
            raise
        self._end("read")

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._end("closed")

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._end("closed")

    def _end(self, how: str, error: BaseException | None = None) -> None:
        if self._done:
            return
        self._done = True
        with quiet():
            self._call.stream_ended(self._reader, how, error)

    def __del__(self) -> None:
        if not self._done:
            with contextlib.suppress(Exception):  # at interpreter shutdown there is nothing left to report to
                self._end("dropped")


def _stream_class() -> type[_ObservedStream]:
    """`_ObservedStream` made an instance of each installed library's byte-stream types."""
    bases: list[type] = []
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        bases += [module.SyncByteStream, module.AsyncByteStream]
    return type("ObservedStream", (_ObservedStream, *bases), {})


_cls: type[_ObservedStream] | None = None


def observed_stream(inner: Any, call: LLMCall, reader: ResponseReader, status: int) -> _ObservedStream:
    global _cls
    if _cls is None:
        _cls = _stream_class()
    return _cls(inner, call, reader, status)
