"""The hook shared by the OpenAI and Anthropic SDKs: both funnel every API call, retries included, through
`SyncAPIClient.request` / `AsyncAPIClient.request(cast_to, options, *, stream, stream_cls)`.

Wrapping it opens one call per SDK method call; the HTTP hook then joins every attempt to it. The SDK hands us
its request body as a dict, so the body is never parsed twice. A call over a hard budget is refused here, before
the SDK sends anything (and before its retry loop could turn the refusal into a connection error).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from . import budgets, runtime
from .budgets import BudgetError
from .call import LLMCall
from .providers import provider_for, route_for
from .request import read_request
from .safety import quiet
from .scope import current_call


def _open(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], provider: str) -> LLMCall | None:
    """The call this SDK request opens, or None for a request that is no LLM call.

    Raises only the `BudgetError` that refuses the call (decided inside `quiet()`, raised outside it)."""
    opened: LLMCall | BudgetError | None = None
    with quiet():
        opened = _open_call(instance, args, kwargs, provider)
    if isinstance(opened, BudgetError):
        raise opened
    return opened


def _open_call(
    instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], provider: str
) -> LLMCall | BudgetError | None:
    rt = runtime.get()
    if rt is None or current_call.get() is not None:
        return None
    options = args[1] if len(args) > 1 else kwargs.get("options")
    url = getattr(options, "url", None)
    body = getattr(options, "json_data", None)
    if not isinstance(url, str) or not isinstance(body, Mapping):
        return None
    extra = getattr(options, "extra_json", None)  # `extra_body=`: the SDK sends it merged into the body
    if isinstance(extra, Mapping) and extra:
        body = {**body, **extra}
    host, port, base_path = _url_parts(instance.base_url)
    path = url if url.startswith("http") else base_path + "/" + url.lstrip("/")
    route = route_for(path.split("?", 1)[0])
    if route is None or ("model" not in body and "/deployments/" not in path):
        return None
    info = read_request(body, api=route.api, url_path=path, keep_body=rt.settings.capture_content)
    azure = _is_azure(instance)
    if azure and not info.model:
        deployment = getattr(instance, "_azure_deployment", None)
        info.model = deployment if isinstance(deployment, str) else ""
    name = provider_for(host, port, path, default=provider, overrides=rt.settings.provider_hosts, azure=azure)
    enforcer = rt.budgets
    if enforcer is not None and enforcer.armed:
        key = partial(budgets.key_from_client, instance, options)
        refused = enforcer.refusal(name, info.model, info.user, rt.settings.environment, key)
        if refused is not None:
            return refused
    return LLMCall(rt, route, name, info, host, port)


_AZURE_CLASSES = frozenset({"BaseAzureClient", "AzureOpenAI", "AsyncAzureOpenAI"})
_azure_types: dict[type, bool] = {}


def _is_azure(instance: Any) -> bool:
    """Whether an SDK client talks to Azure OpenAI: the SDK's Azure client classes (whatever host their
    `azure_endpoint` or `base_url` names: gateways, custom domains), or a client sending an `api-version` query."""
    kind = type(instance)
    found = _azure_types.get(kind)
    if found is None:
        found = _azure_types[kind] = any(c.__name__ in _AZURE_CLASSES for c in kind.__mro__)
    if found:
        return True
    query = getattr(instance, "_custom_query", None)
    return isinstance(query, Mapping) and "api-version" in query


_parts: dict[int, tuple[Any, str, int | None, str]] = {}


def _url_parts(base: Any) -> tuple[str, int | None, str]:
    """Host, port and path of a client's base URL, computed once per URL object."""
    found = _parts.get(id(base))
    if found is None or found[0] is not base:
        if len(_parts) > 256:
            _parts.clear()
        found = _parts[id(base)] = (base, base.host, base.port, base.path.rstrip("/"))
    return found[1], found[2], found[3]


def request_wrappers(provider: str) -> tuple[Any, Any]:
    """The sync and async `request` wrappers for an SDK whose own provider is `provider`."""

    def sync_request(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = _open(instance, args, kwargs, provider)
        if call is None:
            return wrapped(*args, **kwargs)
        token = current_call.set(call)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as error:
            current_call.reset(token)
            call.leave_scope(error)
            raise
        current_call.reset(token)
        call.leave_scope()
        return result

    async def async_request(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = _open(instance, args, kwargs, provider)
        if call is None:
            return await wrapped(*args, **kwargs)
        token = current_call.set(call)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as error:
            current_call.reset(token)
            call.leave_scope(error)
            raise
        current_call.reset(token)
        call.leave_scope()
        return result

    return sync_request, async_request


def wrap_clients(module: str, provider: str) -> None:
    """Wraps `request` of `module`'s SyncAPIClient and AsyncAPIClient."""
    sync_request, async_request = request_wrappers(provider)
    wrap_function_wrapper(module, "SyncAPIClient.request", sync_request)
    wrap_function_wrapper(module, "AsyncAPIClient.request", async_request)


def unwrap_clients(module: Any) -> None:
    unwrap(module.SyncAPIClient, "request")
    unwrap(module.AsyncAPIClient, "request")
