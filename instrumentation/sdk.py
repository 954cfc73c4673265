"""The hook shared by the OpenAI and Anthropic SDKs: both funnel every API call, retries included, through
`SyncAPIClient.request` / `AsyncAPIClient.request(cast_to, options, *, stream, stream_cls)`.

Wrapping it opens one call per SDK method call; the HTTP hook then joins every attempt to it. The SDK hands us
its request body as a dict, so the body is never parsed twice. A call over a hard budget is refused here, before
the SDK sends anything (and before its retry loop could turn the refusal into a connection error).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, NamedTuple

from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from . import apis, runtime
from .apis.base import Endpoint
from .budgets import BudgetError
from .call import LLMCall, current_call
from .keys import key_from_client
from .providers import AZURE_OPENAI, BEDROCK, VERTEX_AI, provider_for


class ClientKind(NamedTuple):
    """What an SDK client class says about the calls it makes, beyond their URL."""

    provider: str | None = None  # the provider its calls go to, whatever the host
    api: str | None = None  # the API its answers come in, when it rewrites the request on the way (Bedrock)


# SDK client class names (anywhere in the client's MRO) -> what they say.
CLIENT_KINDS: dict[str, ClientKind] = {
    "BaseAzureClient": ClientKind(AZURE_OPENAI),
    "AzureOpenAI": ClientKind(AZURE_OPENAI),
    "AsyncAzureOpenAI": ClientKind(AZURE_OPENAI),
    "AnthropicBedrock": ClientKind(BEDROCK, "bedrock.invoke"),  # sends /model/{id}/invoke[-with-response-stream]
    "AsyncAnthropicBedrock": ClientKind(BEDROCK, "bedrock.invoke"),
    "AnthropicVertex": ClientKind(VERTEX_AI),  # sends ...:rawPredict / :streamRawPredict, the Messages bodies
    "AsyncAnthropicVertex": ClientKind(VERTEX_AI),
}
_NO_KIND = ClientKind()
_kinds: dict[type, ClientKind] = {}


def client_kind(instance: Any) -> ClientKind:
    """The kind of an SDK client, from its class (cached per class)."""
    cls = type(instance)
    found = _kinds.get(cls)
    if found is None:
        names = (c.__name__ for c in cls.__mro__)
        found = _kinds[cls] = next((CLIENT_KINDS[n] for n in names if n in CLIENT_KINDS), _NO_KIND)
    return found


def _open_call(
    instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, provider: str
) -> LLMCall | BudgetError | None:
    """The call an SDK `request()` opens (or its refusal), None for a request that is no LLM call."""
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
    path = path.split("?", 1)[0]
    endpoint: Endpoint | None = apis.endpoint_for(path)
    if endpoint is None:
        return None
    kind = client_kind(instance)
    if kind.api is not None:
        endpoint = apis.by_api(kind.api)
    info = endpoint.read_request(body, path, keep_body=rt.settings.capture_content)
    client = AZURE_OPENAI if _has_api_version(instance) else kind.provider
    if info is None:
        deployment = getattr(instance, "_azure_deployment", None) if client == AZURE_OPENAI else None
        if not isinstance(deployment, str) or not deployment:
            return None
        info = endpoint.read_request({**body, "model": deployment}, path, keep_body=rt.settings.capture_content)
        if info is None:
            return None
    default = endpoint.provider or provider
    name = provider_for(host, port, path, default=default, overrides=rt.settings.provider_hosts, client=client)
    return rt.open(endpoint, name, info, host, port, partial(key_from_client, instance, options))


def _has_api_version(instance: Any) -> bool:
    """Whether an SDK client sends an `api-version` query: Azure OpenAI's versioned API, whatever host its
    `base_url` names (gateways, custom domains)."""
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


def request_wrappers(provider: str) -> tuple[runtime.Wrapper, runtime.Wrapper]:
    """The sync and async `request` wrappers for an SDK whose own provider is `provider`."""
    return runtime.method_wrappers(partial(_open_call, provider=provider))


def wrap_clients(module: str, provider: str) -> None:
    """Wraps `request` of `module`'s SyncAPIClient and AsyncAPIClient."""
    sync_request, async_request = request_wrappers(provider)
    wrap_function_wrapper(module, "SyncAPIClient.request", sync_request)
    wrap_function_wrapper(module, "AsyncAPIClient.request", async_request)


def unwrap_clients(module: Any) -> None:
    unwrap(module.SyncAPIClient, "request")
    unwrap(module.AsyncAPIClient, "request")
