"""The wrapper of `botocore.client.BaseClient._make_api_call`, and the client events that follow a Bedrock call's
attempts.

A Bedrock runtime call is one `LLMCall`, opened before anything is sent (a hard budget refuses it there) with
`reads_http=False`: botocore sends with urllib3, and its answers are read here. botocore retries inside
`_make_api_call`; each attempt is seen through the client's own events, registered once per `bedrock-runtime`
client: `before-send` starts an attempt (the signed request names the access key id), `response-received` gives its
status and headers, and an error answer's body, or the exception that ended it. So each retry is an event of the
record, with the status that caused it.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Mapping
from contextvars import ContextVar
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from .. import runtime
from ..apis import bedrock
from ..budgets import BudgetError
from ..call import LLMCall
from ..keys import key_id
from ..providers import BEDROCK, provider_for
from ..safety import quiet
from . import answers

SERVICE = "bedrock-runtime"
_OPERATIONS = frozenset(bedrock.OPERATIONS)
_active: ContextVar[LLMCall | None] = ContextVar("llmtally_bedrock_call", default=None)
_listening: weakref.WeakSet[Any] = weakref.WeakSet()  # the client event emitters our handlers are on
_lock = threading.Lock()
_hosts: dict[str, tuple[str, int | None]] = {}
_original: Any = None  # botocore's own `_make_api_call` while ours is in its place


def install() -> None:
    """Puts our `_make_api_call` in place of botocore's (idempotent). A plain function rather than a `wrapt`
    wrapper: an unrecorded call pays one function call and one set look-up (tens of nanoseconds, not hundreds)."""
    global _original
    from botocore.client import BaseClient

    if _original is not None:
        return
    original = BaseClient.__dict__["_make_api_call"]
    BaseClient._make_api_call = patched(original)
    _original = original


def patched(original: Any) -> Any:
    """botocore's `_make_api_call` with the hook in front of it."""

    @functools.wraps(original)
    def _make_api_call(self: Any, operation_name: str, api_params: Any) -> Any:
        if operation_name not in _OPERATIONS:  # every other AWS call: this one look-up
            return original(self, operation_name, api_params)
        return _call(original, self, operation_name, api_params)

    return _make_api_call


def uninstall() -> None:
    """Puts botocore's `_make_api_call` back and takes our handlers off the clients' events."""
    global _original
    if _original is None:
        return
    from botocore.client import BaseClient

    BaseClient._make_api_call = _original
    _original = None
    with _lock:
        emitters = list(_listening)
        _listening.clear()
    for emitter in emitters:
        for event, handler, unique_id in _HANDLERS:
            emitter.unregister(event, handler, unique_id=unique_id)


def _call(original: Any, instance: Any, operation: str, params: Any) -> Any:
    """A Bedrock runtime operation name: recorded if the client is `bedrock-runtime`."""
    opened: LLMCall | BudgetError | None = None
    with quiet():
        opened = _open(instance, operation, params)
    if isinstance(opened, BudgetError):
        raise opened
    if opened is None:
        return original(instance, operation, params)
    return _run(opened, operation, original, instance, params)


def _open(instance: Any, operation: str, params: Any) -> LLMCall | BudgetError | None:
    rt = runtime.get()
    meta = instance.meta
    if rt is None or not isinstance(params, Mapping) or meta.service_model.service_name != SERVICE:
        return None
    found = bedrock.read_operation(operation, params, keep_body=rt.settings.capture_content)
    if found is None:
        return None
    endpoint, request = found
    host, port = _host(meta.endpoint_url)
    name = provider_for(host, port, "", default=BEDROCK, overrides=rt.settings.provider_hosts, client=BEDROCK)
    _listen(meta.events)
    return rt.open(endpoint, name, request, host, port, partial(_access_key, instance), reads_http=False)


def _run(call: LLMCall, operation: str, original: Any, instance: Any, params: Any) -> Any:
    """Runs the call with its attempts observed; reads its answer before the app gets it."""
    token = _active.set(call)
    try:
        result = original(instance, operation, params)
    except BaseException as error:
        _active.reset(token)
        with quiet():
            answers.failed(call, error)
        call.leave_scope(error)
        raise
    _active.reset(token)
    with quiet():
        result = answers.read(call, operation, result)
    call.leave_scope()
    return result


# The client's events -----------------------------------------------------------------------------------------------


def _before_send(request: Any = None, **kwargs: Any) -> None:
    """An attempt is about to be sent (after signing)."""
    call = _active.get()
    if call is None or call.ended:
        return
    with quiet():
        auth = request.headers.get("Authorization") if request is not None else None
        if isinstance(auth, bytes):
            auth = auth.decode("latin-1")
        call.begin_attempt({"authorization": auth} if auth else {})


def _response_received(response_dict: Any = None, exception: Any = None, **kwargs: Any) -> None:
    """An attempt was answered, or failed without an answer."""
    call = _active.get()
    if call is None or call.ended:
        return
    with quiet():
        if isinstance(response_dict, Mapping):
            answers.attempt(call, response_dict)
        elif isinstance(exception, BaseException):
            call.attempt_failed(exception)


_HANDLERS = (
    (f"before-send.{SERVICE}", _before_send, "llmtally-before-send"),
    (f"response-received.{SERVICE}", _response_received, "llmtally-response-received"),
)


def _listen(events: Any) -> None:
    """Puts our handlers on a `bedrock-runtime` client's events, once per client."""
    if events in _listening:
        return
    with _lock:
        for event, handler, unique_id in _HANDLERS:
            events.register(event, handler, unique_id=unique_id)
        _listening.add(events)


# Small parts ----------------------------------------------------------------------------------------------------


def _host(url: str) -> tuple[str, int | None]:
    found = _hosts.get(url)
    if found is None:
        parts = urlsplit(url)
        if len(_hosts) > 256:
            _hosts.clear()
        found = _hosts[url] = (parts.hostname or "", parts.port)
    return found


def _access_key(instance: Any) -> str | None:
    """The key id of the client's access key id (never its secret), for budgets scoped by API key."""
    credentials = getattr(getattr(instance, "_request_signer", None), "_credentials", None)
    access = getattr(credentials, "access_key", None)
    return key_id(access) if isinstance(access, str) and access else None
