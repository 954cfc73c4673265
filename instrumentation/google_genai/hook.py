"""The wrappers on google-genai's API client (`google.genai._api_client.BaseApiClient`), which every model call goes
through: `request` / `async_request` (whole answers), `request_streamed` / `async_request_streamed` (streams), and
`_request_once` / `_async_request_once`, one attempt each under the SDK's tenacity retry loop.

A model call opens one LLM call (`reads_http=False`: the HTTP-client hook stays out of it); each attempt joins it,
and its answer is read here, at the SDK level, from what the SDK hands back. So httpx, httpx2 and aiohttp (the async
client's transport when it is installed) are served by one path. What the answers say is read by `apis.gemini`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from google.genai import _api_client
from google.genai.errors import APIError
from opentelemetry.instrumentation.utils import unwrap as _unwrap
from wrapt import wrap_function_wrapper

from .. import apis, runtime
from ..apis import gemini
from ..budgets import BudgetError
from ..call import LLMCall, current_call
from ..keys import key_id
from ..providers import GEMINI, VERTEX_AI, provider_for
from ..safety import log, quiet

_ENDPOINTS = frozenset(gemini.ENDPOINTS)
_END = object()
_PARAMETERS = ("http_method", "path", "request_dict", "http_options")
_hosts: dict[str, tuple[str, int | None]] = {}


# Opening a call ---------------------------------------------------------------------------------------------


def _open_call(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> LLMCall | BudgetError | None:
    rt = runtime.get()
    if rt is None or current_call.get() is not None:
        return None
    method, path, body, options = _arguments(args, kwargs)
    if not isinstance(path, str) or not isinstance(body, Mapping) or str(method).lower() != "post":
        return None
    path = "/" + path.split("?", 1)[0].lstrip("/")
    endpoint = apis.endpoint_for(path)
    if endpoint not in _ENDPOINTS or endpoint is None:
        return None
    request = endpoint.read_request(body, path, keep_body=rt.settings.capture_content)
    if request is None:
        return None
    host, port = _host(instance, options)
    client = VERTEX_AI if instance.vertexai else GEMINI
    name = provider_for(host, port, path, default=GEMINI, overrides=rt.settings.provider_hosts, client=client)
    return rt.open(endpoint, name, request, host, port, partial(_key, instance), reads_http=False)


def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """`[http_method, path, request_dict, http_options]` of a `request` call."""
    return [args[i] if i < len(args) else kwargs.get(name) for i, name in enumerate(_PARAMETERS)]


def _host(instance: Any, options: Any) -> tuple[str, int | None]:
    """Host and port of the base URL a request goes to (a per-request `http_options.base_url` wins)."""
    base = options.get("base_url") if isinstance(options, Mapping) else getattr(options, "base_url", None)
    if not base:
        base = instance._http_options.base_url or ""
    found = _hosts.get(base)
    if found is None:
        if len(_hosts) > 256:
            _hosts.clear()
        parts = urlsplit(base)
        found = _hosts[base] = (parts.hostname or "", parts.port)
    return found


def _key(instance: Any) -> str | None:
    secret = getattr(instance, "api_key", None)
    return key_id(secret) if isinstance(secret, str) and secret else None


def _joined() -> LLMCall | None:
    """The call this hook opened in this context, which an attempt joins."""
    call = current_call.get()
    if call is None or call.ended or call.reads_http or call.endpoint not in _ENDPOINTS:
        return None
    return call


# Attempts ---------------------------------------------------------------------------------------------------


def _begin(call: LLMCall, instance: Any) -> None:
    secret = getattr(instance, "api_key", None)
    # The key is named from the client's own key (never from an OAuth access token, which changes).
    call.begin_attempt({"x-goog-api-key": secret} if isinstance(secret, str) and secret else {})


def _failed(call: LLMCall, error: BaseException) -> None:
    with quiet():
        if isinstance(error, APIError) and isinstance(error.code, int):
            response = getattr(error, "response", None)
            call.attempt_answered(error.code, _lowered(getattr(response, "headers", None)))
            if call.reader is not None:
                gemini.read_error_object(call.reader.answer, error.details)
        else:
            call.attempt_failed(error)


def _answered(call: LLMCall, response: Any, stream: bool) -> None:
    """An attempt was answered 200: a whole answer is read now, a streamed one as the app reads it."""
    with quiet():
        call.attempt_answered(200, _lowered(getattr(response, "headers", None)))
        reader = call.reader
        if reader is None:
            return
        if stream:
            call.body_started()
            return
        answer = response.response_stream
        text = answer[0] if isinstance(answer, list) and answer else None
        if isinstance(text, (str, bytes)) and isinstance(call.endpoint, gemini.GeminiEndpoint):
            call.endpoint.read_text(reader.answer, text, capture=reader.capture)


def _lowered(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _request_once(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call = _joined()
    if call is None:
        return wrapped(*args, **kwargs)
    with quiet():
        _begin(call, instance)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as error:
        _failed(call, error)
        raise
    _answered(call, response, _streamed(args, kwargs))
    return response


async def _async_request_once(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call = _joined()
    if call is None:
        return await wrapped(*args, **kwargs)
    with quiet():
        _begin(call, instance)
    try:
        response = await wrapped(*args, **kwargs)
    except BaseException as error:
        _failed(call, error)
        raise
    _answered(call, response, _streamed(args, kwargs))
    return response


def _streamed(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return bool(args[1] if len(args) > 1 else kwargs.get("stream", False))


# Whole answers ----------------------------------------------------------------------------------------------


_request, _async_request = runtime.method_wrappers(_open_call)


# Streams ----------------------------------------------------------------------------------------------------


class _Stream:
    """Reads the chunks of one streamed answer as the app gets them, and ends the call once."""

    __slots__ = ("_broken", "call", "done")

    def __init__(self, call: LLMCall) -> None:
        self.call = call
        self.done = False
        self._broken = False

    def read(self, item: Any) -> None:
        """One chunk: the SDK's `SdkHttpResponse`, its body the chunk as JSON text."""
        if self._broken:
            return
        try:
            reader = self.call.reader
            body = getattr(item, "body", None)
            if reader is None or not isinstance(body, str):
                return
            answer = reader.answer
            if answer.first_chunk_ns is None:
                answer.first_chunk_ns = time.time_ns()
            endpoint = self.call.endpoint
            if isinstance(endpoint, gemini.GenerateContent):
                endpoint.read_chunk(answer, body, capture=reader.capture)
        except Exception:
            self._broken = True
            log.debug("llmtally could not read a streamed answer", exc_info=True)

    def end(self, how: str, error: BaseException | None = None) -> None:
        """The stream was read to its end ("read"), closed or dropped ("closed"), or failed."""
        if self.done:
            return
        self.done = True
        with quiet():
            call, reader = self.call, self.call.reader
            if reader is None or not call.body_open:
                return  # no answer was streamed: the call ends with its scope
            if isinstance(error, APIError):  # an error event in the stream: the SDK raised it for the app
                gemini.read_error_object(reader.answer, error.details)
                error = None
            call.stream_ended(reader, how, error)

    def fail(self, error: BaseException) -> None:
        """The SDK raised while the call was still in its scope (a refused attempt, or the first chunk)."""
        in_body = self.call.body_open
        self.end("failed", error)
        self.call.leave_scope(None if in_body else error)


def _request_streamed(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return _chunks(wrapped, instance, args, kwargs)


def _chunks(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Any]:
    """`request_streamed`'s generator: the request is sent when it is first iterated, as the SDK's own."""
    call = runtime.opened(_open_call, instance, args, kwargs)
    if call is None:
        yield from wrapped(*args, **kwargs)
        return
    stream = _Stream(call)
    token = current_call.set(call)
    try:
        chunks = wrapped(*args, **kwargs)
        item = next(chunks, _END)  # the attempts run here
    except BaseException as error:
        current_call.reset(token)
        stream.fail(error)
        raise
    current_call.reset(token)
    call.leave_scope()
    try:
        while item is not _END:
            stream.read(item)
            yield item
            item = next(chunks, _END)
    except GeneratorExit:
        stream.end("closed")
        chunks.close()
        raise
    except BaseException as error:
        stream.end("failed", error)
        raise
    stream.end("read")


async def _async_request_streamed(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call = runtime.opened(_open_call, instance, args, kwargs)
    if call is None:
        return await wrapped(*args, **kwargs)
    stream = _Stream(call)
    token = current_call.set(call)
    try:
        chunks = await wrapped(*args, **kwargs)  # the attempts run here
    except BaseException as error:
        current_call.reset(token)
        stream.fail(error)
        raise
    current_call.reset(token)
    call.leave_scope()
    return _AsyncChunks(chunks, stream)


class _AsyncChunks:
    """The async generator `async_request_streamed` returns, read as it is iterated. An object rather than an async
    generator, so that one dropped before it was ever iterated still ends its call."""

    __slots__ = ("_inner", "_stream")

    def __init__(self, inner: Any, stream: _Stream) -> None:
        self._inner = inner
        self._stream = stream

    def __aiter__(self) -> _AsyncChunks:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self._inner.__anext__()
        except StopAsyncIteration:
            self._stream.end("read")
            raise
        except BaseException as error:
            self._stream.end("failed", error)
            raise
        self._stream.read(item)
        return item

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._stream.end("closed")

    def __del__(self) -> None:
        if not self._stream.done:
            self._stream.end("closed")


# Wrapping ---------------------------------------------------------------------------------------------------

_WRAPPERS = {
    "request": _request,
    "async_request": _async_request,
    "request_streamed": _request_streamed,
    "async_request_streamed": _async_request_streamed,
    "_request_once": _request_once,
    "_async_request_once": _async_request_once,
}


def wrap() -> None:
    for name, wrapper in _WRAPPERS.items():
        wrap_function_wrapper(_api_client, f"BaseApiClient.{name}", wrapper)


def unwrap() -> None:
    for name in _WRAPPERS:
        _unwrap(_api_client.BaseApiClient, name)
