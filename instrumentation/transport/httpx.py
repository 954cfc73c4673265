"""The hook on `httpx2` and `httpx` clients' `send`: every LLM API attempt made with them passes through here.

Inside a call that an SDK hook opened, an attempt joins that call (so SDK retries make one record), unless that
hook reads its answers itself. Outside one, a POST to a known LLM API path with a JSON body that names a model opens
a call of its own, unless a hard budget refuses it (then `send` raises the `BudgetError` and nothing is sent).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from functools import partial
from typing import Any

import wrapt

from .. import runtime
from ..apis import endpoint_for
from ..budgets import BudgetError
from ..call import LLMCall, current_call
from ..keys import key_from_headers
from ..providers import AZURE_OPENAI, provider_for
from ..reader import ResponseReader
from ..safety import quiet as _quiet
from .streams import observed_stream

LIBRARIES = ("httpx2", "httpx")
_NO_USAGE_OPTION = frozenset({"anthropic", "mistral_ai", "ollama"})
_patched: list[tuple[type, str, Any]] = []


def install() -> None:
    """Wraps `Client.send` and `AsyncClient.send` of each HTTP library that is installed (idempotent)."""
    if _patched:
        return
    for name in LIBRARIES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for cls_name, wrapper in (("Client", _send), ("AsyncClient", _async_send)):
            cls = getattr(module, cls_name)
            original = cls.__dict__.get("send")
            if original is None or isinstance(original, wrapt.ObjectProxy):
                continue  # an alias of a library already wrapped
            cls.send = wrapt.FunctionWrapper(original, wrapper)
            _patched.append((cls, "send", original))


def uninstall() -> None:
    """Puts the original methods back."""
    while _patched:
        cls, attr, original = _patched.pop()
        setattr(cls, attr, original)


def parse_body(content: bytes) -> Mapping[str, Any] | None:
    """A JSON object body, or None for anything else."""
    if not content or content[:1] not in (b"{", b" ", b"\n"):
        return None
    try:
        value = json.loads(content)
    except ValueError:
        return None
    return value if isinstance(value, Mapping) else None


def _open(request: Any) -> tuple[LLMCall | BudgetError | None, bool]:
    """The call this attempt belongs to (or the refusal of a call it would open), and whether this hook opened it."""
    call = current_call.get()
    url = request.url
    if call is not None and not call.ended:
        # Inside an SDK hook's call: join it, unless that hook reads the answers itself or this goes elsewhere.
        return (call if call.reads_http and call.host == url.host else None), False
    rt = runtime.get()
    if rt is None or not rt.records_plain_http or request.method != "POST":
        return None, False
    path = url.path
    endpoint = endpoint_for(path)
    if endpoint is None:
        return None, False
    try:
        body = parse_body(request.content)
    except Exception:  # a streamed request body: not an LLM API call we can read
        return None, False
    if body is None:
        return None, False
    info = endpoint.read_request(body, path, keep_body=rt.settings.capture_content)
    if info is None:
        return None, False
    # Azure OpenAI's versioned API, also behind gateways and custom domains.
    client = AZURE_OPENAI if b"api-version=" in url.query else None
    provider = provider_for(
        url.host, url.port, path, default=endpoint.provider, overrides=rt.settings.provider_hosts, client=client
    )
    return rt.open(endpoint, provider, info, url.host, url.port, partial(key_from_headers, request.headers)), True


def _begin(call: LLMCall, request: Any) -> tuple[Any, ResponseReader]:
    """Starts an attempt; asks for streamed usage when the app did not and the API allows it."""
    inject = (
        call.request.stream
        and not call.request.stream_options
        and call.endpoint.usage_option
        and call.provider not in _NO_USAGE_OPTION
        and call.settings.stream_usage
    )
    if inject:
        rewritten = _with_usage_option(request)
        inject = rewritten is not None
        request = rewritten or request
    return request, call.begin_attempt(request.headers, inject_usage=inject)


def _with_usage_option(request: Any) -> Any | None:
    """`request` with its JSON body also asking for `stream_options.include_usage` (None if it cannot be)."""
    try:
        body = request.content.rstrip()
    except Exception:
        return None
    if not body.endswith(b"}"):
        return None
    head = body[:-1].rstrip()
    sep = b"" if head.endswith(b"{") else b","
    content = head + sep + b'"stream_options":{"include_usage":true}}'
    stream_type = type(request.stream)
    if hasattr(request, "_content") and getattr(stream_type, "__name__", "") == "ByteStream":
        # In place, as the library itself does when it reads a body: the SDK keeps this request object.
        request._content = content
        request.stream = stream_type(content)
        request.headers["content-length"] = str(len(content))
        return request
    headers = request.headers.copy()
    if "content-length" in headers:
        del headers["content-length"]
    return type(request)(request.method, request.url, headers=headers, content=content, extensions=request.extensions)


class _Attempt:
    """One HTTP attempt of a call, between the hook's send and the answer."""

    __slots__ = ("args", "call", "kwargs", "owned", "reader")

    def __init__(
        self, call: LLMCall, owned: bool, reader: ResponseReader, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.call, self.owned, self.reader, self.args, self.kwargs = call, owned, reader, args, kwargs

    def failed(self, error: BaseException) -> None:
        with _quiet():
            self.call.attempt_failed(error)
        self._done()

    def answered(self, response: Any) -> None:
        """Reads what the answer says now; a streamed body is read as the app reads it."""
        with _quiet():
            call, reader = self.call, self.reader
            status = response.status_code
            headers: Mapping[str, str] = dict(response.headers.items())  # lower-case keys; O(1) look-ups
            call.attempt_answered(status, headers)
            if self.kwargs.get("stream"):
                reader.start_stream(headers.get("content-type", ""), status)
                call.body_started()
                response.stream = observed_stream(response.stream, call, reader, status)
            else:
                reader.read_body(response.content, status)
        self._done()

    def _done(self) -> None:
        if self.owned:
            with _quiet():
                self.call.leave_scope()


def _prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Attempt | BudgetError | None:
    """The attempt to record for this send, None to send untouched, or the refusal to raise. Never raises."""
    with _quiet():
        request = args[0] if args else kwargs["request"]
        call, owned = _open(request)
        if call is None or isinstance(call, BudgetError):
            return call
        try:
            sent, reader = _begin(call, request)
        except Exception:
            if owned:
                call.leave_scope()
            raise
        if args:
            args = (sent, *args[1:])
        else:
            kwargs = {**kwargs, "request": sent}
        return _Attempt(call, owned, reader, args, kwargs)
    return None


def _send(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    attempt = _prepare(args, kwargs)
    if attempt is None:
        return wrapped(*args, **kwargs)
    if isinstance(attempt, BudgetError):
        raise attempt
    try:
        response = wrapped(*attempt.args, **attempt.kwargs)
    except BaseException as error:
        attempt.failed(error)
        raise
    attempt.answered(response)
    return response


async def _async_send(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    attempt = _prepare(args, kwargs)
    if attempt is None:
        return await wrapped(*args, **kwargs)
    if isinstance(attempt, BudgetError):
        raise attempt
    try:
        response = await wrapped(*attempt.args, **attempt.kwargs)
    except BaseException as error:
        attempt.failed(error)
        raise
    attempt.answered(response)
    return response
