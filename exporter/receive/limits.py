"""What the receiver takes in at once: export requests in flight per transport (`Slots`), and each request's body,
read against the size limit as it arrives and inflated member by member (`read_body`, `Gunzip`).

A request past its transport's slots is refused before anything of it is read, and a body past the limit is
refused once the limit is crossed, so the bodies in memory stay within slots x `max_request_bytes`; and what keeps
the memory they leave behind small: freed bodies go back to the system (`return_freed_bodies`), refusals let go of
the requests they answer (`release`).
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import traceback
import zlib
from collections.abc import AsyncIterable

from .decode import Malformed, TooLarge, UnsupportedMediaType

_GZIP = 16 + zlib.MAX_WBITS  # a gzip header and trailer around the deflate stream
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


class Slots:
    """At most `size` requests at once; a request past them is refused at once (`take` is False), never queued."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("at least one request slot")
        self.size = size
        self._free = threading.BoundedSemaphore(size)

    def take(self) -> bool:
        return self._free.acquire(blocking=False)

    def give(self) -> None:
        self._free.release()


class Gunzip:
    """A gzip body inflated as it arrives: every member (`gzip.compress(a) + gzip.compress(b)` is a + b), at most
    `max_bytes` out (TooLarge past it, before more is inflated), and Malformed when `end` finds it cut short, empty
    or followed by anything that is not another member."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._inflater = zlib.decompressobj(_GZIP)
        self._open = False  # the current member has begun and not ended
        self._members = 0

    def feed(self, data: bytes) -> bytes:
        """The bytes `data` inflates to (they may end one member and begin the next)."""
        out = []
        while data:
            self._open = True
            try:
                piece = self._inflater.decompress(data, self.max_bytes + 1 - self.size)
            except zlib.error as error:
                raise Malformed(f"bad gzip body: {error}") from error
            self.size += len(piece)
            if self.size > self.max_bytes:
                raise TooLarge(f"the body inflates to more than {self.max_bytes} bytes")
            out.append(piece)
            if self._inflater.eof:  # a member ended: what follows it must be another one
                self._members += 1
                self._open = False
                data = self._inflater.unused_data
                self._inflater = zlib.decompressobj(_GZIP)
            else:
                data = self._inflater.unconsumed_tail
        return b"".join(out)

    def end(self) -> None:
        """Malformed unless the body was whole gzip members."""
        if self._open:
            raise Malformed("the gzip body is cut short (a member without its end)")
        if not self._members:
            raise Malformed("the gzip body is empty")


async def read_body(chunks: AsyncIterable[bytes], encoding: str, length: str | None, max_bytes: int) -> bytes:
    """The body that `chunks` bring (as sent with `Content-Encoding: encoding` and `Content-Length: length`), inflated:
    refused (TooLarge) as soon as the bytes sent, or what they inflate to, pass `max_bytes`, without reading the
    rest; UnsupportedMediaType for an encoding other than gzip or none, before reading."""
    encoding = encoding.strip().lower()
    if encoding not in ("", "identity", "gzip"):
        raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding!r} (use gzip or none)")
    if length is not None and length.isascii() and length.strip().isdigit() and int(length) > max_bytes:
        raise TooLarge(f"the body is larger than {max_bytes} bytes (Content-Length {int(length)})")
    gunzip = Gunzip(max_bytes) if encoding == "gzip" else None
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"the body is larger than {max_bytes} bytes")
        parts.append(gunzip.feed(chunk) if gunzip else chunk)
    if gunzip:
        gunzip.end()
    return b"".join(parts)


def return_freed_bodies(threshold: int = 1 << 20) -> None:
    """Makes glibc's malloc serve blocks of `threshold` bytes and more (request bodies, their copies) with mmap, so
    that each goes back to the system once freed. By default glibc raises that threshold to the size of the first
    such block freed, then keeps freed bodies in its heap: a flood of large bodies leaves the process far larger
    than what it holds. Without glibc (another allocator), nothing changes."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, threshold)


def release(error: BaseException) -> None:
    """Clears the finished frames of `error`'s traceback and of the exceptions it chains. They hold the request's
    body and records, which an exception answered and dropped would otherwise keep until the next cyclic garbage
    collection: an exception that came through asyncio (a thread pool's future) is in a reference cycle with it."""
    seen: set[int] = set()
    found: BaseException | None = error
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        traceback.clear_frames(found.__traceback__)
        found = found.__cause__ or found.__context__
