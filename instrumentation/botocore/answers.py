"""Reading a Bedrock call's attempts and answers from botocore's parsed responses, through the call's endpoint.

Converse's parsed answer is read as it is; InvokeModel's `body` (a `StreamingBody`) is read and the app is given an
equivalent one over the same bytes; the two streams' `EventStream` is wrapped so that the app's iteration is read,
and the call ends once, when the stream is exhausted, closed, dropped or fails.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping
from typing import Any

from wrapt import ObjectProxy

from ..call import LLMCall
from ..reader import MAX_BUFFERED_BODY, ResponseReader
from ..safety import log, quiet

_STREAM_KEYS = {"ConverseStream": "stream", "InvokeModelWithResponseStream": "body"}


def attempt(call: LLMCall, response: Mapping[str, Any]) -> None:
    """One attempt's answer (botocore's response dict): its status and headers, and an error answer's body."""
    status = response.get("status_code")
    if not isinstance(status, int):
        return
    headers = response.get("headers") or {}
    call.attempt_answered(status, {str(k).lower(): str(v) for k, v in headers.items()})
    body = response.get("body")
    if status >= 300 and call.reader is not None and isinstance(body, bytes):
        call.reader.read_body(body, status)


def failed(call: LLMCall, error: BaseException) -> None:
    """The call raised. When no attempt was seen (a stubbed client), the error's response says what it can."""
    response = getattr(error, "response", None)
    if call.attempts or not isinstance(response, Mapping):
        return
    reader = _from_metadata(call, response)
    found = response.get("Error")
    if isinstance(found, Mapping) and reader.answer.error_type is None:
        reader.answer.fail(found.get("Code"), found.get("Message"))


def read(call: LLMCall, operation: str, result: Any) -> Any:
    """Reads a successful answer; returns what the app gets (the same dict, its body or stream replaced)."""
    if not isinstance(result, dict):
        return result
    reader = call.reader if call.reader is not None else _from_metadata(call, result)
    if operation == "Converse":
        reader.read_object(result)
    elif operation == "InvokeModel":
        _read_body(call, reader, result)
    else:
        key = _STREAM_KEYS[operation]
        stream = result.get(key)
        if stream is not None:
            result[key] = ObservedEvents(stream, call, reader)
            call.body_started()
    return result


def _from_metadata(call: LLMCall, response: Mapping[str, Any]) -> ResponseReader:
    """An attempt made of a parsed response's `ResponseMetadata` (for answers no event showed)."""
    reader = call.begin_attempt({})
    meta = response.get("ResponseMetadata")
    if isinstance(meta, Mapping) and isinstance(meta.get("HTTPStatusCode"), int):
        headers = meta.get("HTTPHeaders")
        lowered = {str(k).lower(): str(v) for k, v in headers.items()} if isinstance(headers, Mapping) else {}
        call.attempt_answered(meta["HTTPStatusCode"], lowered)
    return reader


class _Raising(io.RawIOBase):
    """A body whose reading raises the error that reading the real one raised."""

    def __init__(self, error: BaseException) -> None:
        self._error = error

    def read(self, size: int = -1) -> bytes:
        raise self._error


def _read_body(call: LLMCall, reader: ResponseReader, result: dict[str, Any]) -> None:
    """InvokeModel's body: read whole, and handed on as an equivalent `StreamingBody` over the same bytes (or one
    that raises the same error)."""
    from botocore.response import StreamingBody

    body = result.get("body")
    if body is None or not hasattr(body, "read"):
        return
    try:
        data = body.read()
    except Exception as error:
        result["body"] = StreamingBody(_Raising(error), None)
        call.body_started()
        call.body_ended(reader, "failed", error)
        return
    result["body"] = StreamingBody(io.BytesIO(data), len(data))
    if len(data) <= MAX_BUFFERED_BODY:
        reader.read_body(data, call.status or 200)


class ObservedEvents(ObjectProxy):  # type: ignore[misc,type-arg]
    """botocore's `EventStream`, read as the app iterates it; the call ends once with the stream."""

    def __init__(self, inner: Any, call: LLMCall, reader: ResponseReader) -> None:
        super().__init__(inner)
        self._self_call = call
        self._self_reader = reader
        self._self_done = False
        self._self_broken = False  # our reading failed: events are handed on unread from then on

    def __iter__(self) -> Iterator[Any]:
        read = self._self_reader.read_parsed_event
        try:
            for event in self.__wrapped__:
                if not self._self_broken:
                    try:
                        for name, data in event.items():
                            if isinstance(data, Mapping):
                                read(name, data)
                    except Exception:
                        self._self_broken = True
                        log.debug("llmtally could not read a Bedrock stream event", exc_info=True)
                yield event
        except GeneratorExit:  # the app left its loop: the stream goes on if it iterates again
            raise
        except BaseException as error:
            self._self_end("failed", error)
            raise
        self._self_end("read")

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_end("closed")

    def __del__(self) -> None:
        if not self._self_done:
            with contextlib.suppress(Exception):  # at interpreter shutdown there is nothing left to report to
                self._self_end("dropped")

    def _self_end(self, how: str, error: BaseException | None = None) -> None:
        if self._self_done:
            return
        self._self_done = True
        with quiet():
            reader = self._self_reader
            found = getattr(error, "response", None)
            if isinstance(found, Mapping) and isinstance(found.get("Error"), Mapping):
                # An exception event (botocore's EventStreamError): typed by its AWS code, as over HTTP.
                reader.answer.fail(found["Error"].get("Code"), found["Error"].get("Message"))
                error = None
            self._self_call.stream_ended(reader, how, error)
