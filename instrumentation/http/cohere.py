"""Cohere's SDK retries as one call.

`cohere.ClientV2` / `AsyncClientV2` send with httpx, so the HTTP hook sees every attempt; but the SDK retries a
failed request (429, 5xx, a refused connection) by calling its `HttpClient.request` again, which would make each
attempt a call of its own. Wrapping that method opens the call once, around all its attempts; the HTTP hook joins
each attempt to it, as it does for the OpenAI and Anthropic SDKs. Streams (`HttpClient.stream`) are never retried
by the SDK: the HTTP hook alone records them.

The method is wrapped once the app imports the SDK (nothing is imported here otherwise).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from functools import partial
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import wrapt
from opentelemetry.instrumentation.utils import unwrap as _unwrap

from .. import apis, runtime
from ..budgets import BudgetError
from ..call import LLMCall, current_call
from ..keys import key_from_headers
from ..providers import provider_for
from ..safety import quiet

MODULE = "cohere.core.http_client"


class _State:
    wanted = False  # the hook is on
    hooked = False  # the post-import hook is registered (wrapt cannot take it back: it checks `wanted`)
    wrapped: ModuleType | None = None


def wrap() -> None:
    """Wraps the SDK's `request` now if it is imported, else as soon as it is."""
    _State.wanted = True
    module = sys.modules.get(MODULE)
    if module is not None:
        _wrap(module)
    elif not _State.hooked:
        _State.hooked = True
        wrapt.register_post_import_hook(_wrap, MODULE)


def unwrap() -> None:
    _State.wanted = False
    module, _State.wrapped = _State.wrapped, None
    if module is not None:
        with quiet():
            _unwrap(module.HttpClient, "request")
            _unwrap(module.AsyncHttpClient, "request")


def _wrap(module: ModuleType) -> None:
    """Wraps the SDK's `request` methods (called once the SDK is imported)."""
    if not _State.wanted or _State.wrapped is module:
        return
    with quiet():  # another SDK version without these methods: its retries are then separate calls
        sync_request, async_request = runtime.method_wrappers(_open_call)
        wrapt.wrap_function_wrapper(module, "HttpClient.request", sync_request)
        wrapt.wrap_function_wrapper(module, "AsyncHttpClient.request", async_request)
        _State.wrapped = module


def _open_call(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> LLMCall | BudgetError | None:
    rt = runtime.get()
    if rt is None or not rt.records_plain_http or current_call.get() is not None:
        return None  # off, or a retry (the SDK calls itself): the first attempt's call goes on
    path = args[0] if args else kwargs.get("path")
    body = kwargs.get("json")
    if str(kwargs.get("method", "")).upper() != "POST" or not isinstance(path, str) or not isinstance(body, Mapping):
        return None
    url = urlsplit(instance.get_base_url(kwargs.get("base_url")).rstrip("/") + "/" + path.lstrip("/"))
    endpoint = apis.endpoint_for(url.path)
    if endpoint is None:
        return None
    omit = kwargs.get("omit")
    sent = {k: v for k, v in body.items() if v is not None and v is not omit}  # as the SDK sends it
    info = endpoint.read_request(sent, url.path, keep_body=rt.settings.capture_content)
    if info is None:
        return None
    host, port = url.hostname or "", url.port
    name = provider_for(host, port, url.path, default=endpoint.provider, overrides=rt.settings.provider_hosts)
    headers = {str(k).lower(): str(v) for k, v in instance.base_headers().items()}
    return rt.open(endpoint, name, info, host, port, partial(key_from_headers, headers))
