"""Incremental splitting of streamed bodies: Server-Sent Events, newline-delimited JSON and AWS event streams."""

from __future__ import annotations

from typing import NamedTuple


class Event(NamedTuple):
    """One server-sent event: its raw bytes (with the blank line that ends it), its name and its data."""

    raw: bytes
    name: bytes
    data: bytes


class SSESplitter:
    """Cuts a byte stream at event boundaries; bytes of an unfinished event wait for the next chunk."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = b""  # the bytes of an unfinished event

    def feed(self, chunk: bytes) -> bytes:
        """The complete events received so far and not yet returned, as one block of raw bytes."""
        buffer = self.pending + chunk if self.pending else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        if buffer.endswith(b"\n\n"):  # the usual chunk: whole events
            self.pending = b""
            return buffer
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self.pending = buffer
            return b""
        self.pending = buffer[end + 2 :]
        return buffer[: end + 2]

    def flush(self) -> bytes:
        """What is left of a body that ended without a blank line."""
        rest, self.pending = self.pending, b""
        return rest if rest.strip() else b""


def events(block: bytes) -> list[Event]:
    """The events of a block of complete events."""
    return [_parse(raw + b"\n\n") for raw in block.split(b"\n\n") if raw.strip()]


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


class EventStreamSplitter:
    """Cuts an AWS event stream (`application/vnd.amazon.eventstream`: Bedrock's streamed answers) into messages,
    with botocore's own decoder. Each message becomes an `Event` named by its `:event-type` (or, for an error
    message, `:exception-type` prefixed with `exception:`), with its payload as data."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        from botocore.eventstream import EventStreamBuffer  # only apps that call Bedrock have AWS event streams

        self._buffer = EventStreamBuffer()

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer.add_data(chunk)
        found: list[Event] = []
        for message in self._buffer:
            headers = message.headers
            if headers.get(":message-type") == "event":
                name = str(headers.get(":event-type", ""))
            else:
                name = "exception:" + str(headers.get(":exception-type") or headers.get(":error-code") or "error")
            found.append(Event(b"", name.encode(), message.payload))
        return found
