"""Incremental splitting of streamed bodies: Server-Sent Events and newline-delimited JSON."""

from __future__ import annotations

from typing import NamedTuple


class Event(NamedTuple):
    """One server-sent event: its raw bytes (with the blank line that ends it), its name and its data."""

    raw: bytes
    name: bytes
    data: bytes


class SSESplitter:
    """Cuts a byte stream into complete events; bytes of an unfinished event wait for the next chunk."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[Event]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        events: list[Event] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            events.append(_parse(buffer[start : end + 2]))
            start = end + 2
        self._buffer = buffer[start:]
        return events

    def flush(self) -> list[Event]:
        """The last event of a body that ended without a blank line."""
        rest, self._buffer = self._buffer, b""
        return [_parse(rest)] if rest.strip() else []


def _parse(raw: bytes) -> Event:
    name = b""
    data: list[bytes] = []
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            name = line[6:].strip()
    return Event(raw, name, b"\n".join(data))


class LineSplitter:
    """Cuts newline-delimited JSON into lines."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk if self._buffer else chunk
        *lines, self._buffer = buffer.split(b"\n")
        return [line for line in lines if line.strip()]

    def flush(self) -> list[bytes]:
        rest, self._buffer = self._buffer, b""
        return [rest] if rest.strip() else []
