"""Amazon Bedrock's runtime API: Converse (`/model/{modelId}/converse`, `/converse-stream`) and InvokeModel
(`/model/{modelId}/invoke`, `/invoke-with-response-stream`), with each model family's own bodies.

The model id is the URL-encoded path segment (or, for the Anthropic SDK's `AnthropicBedrock`, read before the SDK
moves it there, the body's `model`): a foundation model, a cross-region inference profile (`us.`, `eu.`, `apac.`,
`global.`...) or an ARN, kept whole as the request model, so it is priced as named (regional or global rates).
Bedrock's answers name no model id: the Claude bodies' `model` is left out, so the request's id is priced.

Usage, as genai-prices' `aws` extractor reads it: Converse's `usage.inputTokens` excludes the cache reads and
writes (`cacheReadInputTokens`, `cacheWriteInputTokens`), which are added in; Claude's invoke bodies are Anthropic's
(`apis.anthropic`). The other families report their own counts (Llama `prompt_token_count` /
`generation_token_count`, Nova `usage.inputTokens` + `cacheRead/WriteInputTokenCount`, Titan `inputTextTokenCount`
/ `tokenCount`); a body without counts (Mistral, Cohere) takes them from Bedrock's `x-amzn-bedrock-*-token-count`
headers, an invoke stream from its last chunk's `amazon-bedrock-invocationMetrics`. Streams are AWS event streams:
Converse's named events, or InvokeModel's `chunk` events whose `bytes` hold the family's own chunk (base64 on the
wire, raw bytes once botocore has parsed it). Errors are named by AWS error codes (`x-amzn-ErrorType`, a body's
`code`/`__type`, an exception event), mapped to bounded error types by `ERROR_TYPES`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from .. import semconv
from ..usage import Usage, count
from . import anthropic, openai
from .base import Answer, Endpoint, Request, loads, read_params

PROVIDER = "aws.bedrock"
_MODEL = "/model/"
_METRICS = "amazon-bedrock-invocationMetrics"
_CONVERSE_EVENTS = frozenset({"messageStart", "contentBlockDelta", "messageStop", "metadata"})

# AWS error codes (lower-case, as exception events spell them with a small first letter) -> bounded error types.
# ModelNotReadyException (the model is being loaded or scaled, and the SDKs retry it) is the provider's side, not
# the caller's rate: server_error.
ERROR_TYPES: Mapping[str, str] = {
    "throttlingexception": "rate_limit",
    "servicequotaexceededexception": "rate_limit",
    "toomanyrequestsexception": "rate_limit",
    "validationexception": "invalid_request",
    "accessdeniedexception": "auth_error",
    "unrecognizedclientexception": "auth_error",
    "invalidsignatureexception": "auth_error",
    "expiredtokenexception": "auth_error",
    "modeltimeoutexception": "timeout",
    "resourcenotfoundexception": "model_error",
    "modelerrorexception": "model_error",
    "modelstreamerrorexception": "model_error",
    "modelnotreadyexception": "server_error",
    "internalserverexception": "server_error",
    "serviceunavailableexception": "server_error",
}

_PARAMS: tuple[tuple[str, str], ...] = (
    ("maxTokens", semconv.REQUEST_MAX_TOKENS),  # Converse, Nova
    ("max_new_tokens", semconv.REQUEST_MAX_TOKENS),  # Nova
    ("maxTokenCount", semconv.REQUEST_MAX_TOKENS),  # Titan
    ("max_gen_len", semconv.REQUEST_MAX_TOKENS),  # Llama
    ("max_tokens", semconv.REQUEST_MAX_TOKENS),  # Mistral, Cohere
    ("temperature", semconv.REQUEST_TEMPERATURE),
    ("topP", semconv.REQUEST_TOP_P),
    ("top_p", semconv.REQUEST_TOP_P),
    ("p", semconv.REQUEST_TOP_P),  # Cohere
    ("topK", semconv.REQUEST_TOP_K),
    ("top_k", semconv.REQUEST_TOP_K),
    ("k", semconv.REQUEST_TOP_K),  # Cohere
    ("seed", semconv.REQUEST_SEED),
)
_STOP_KEYS = ("stopSequences", "stop_sequences", "stop")
_CONFIGS = ("inferenceConfig", "textGenerationConfig")  # Converse and Nova; Titan
# The prompt fields of the families' bodies, for content capture.
_INPUTS = ("system", "messages", "prompt", "inputText", "preamble", "chat_history", "message", "texts")


def model_from_path(path: str) -> str:
    """The model id in `.../model/{modelId}/{action}`, URL-decoded ("" for another path). An ARN keeps its
    slashes, whether the path has them encoded or not."""
    if _MODEL not in path:
        return ""
    rest = path.split(_MODEL, 1)[1]
    return unquote(rest.rsplit("/", 1)[0]) if "/" in rest else ""


def error_code(value: str) -> str:
    """An AWS error code from its header or body forms (`Code:http://...`, `namespace#Code`)."""
    return value.split(":", 1)[0].rsplit("#", 1)[-1].strip()


# Usage ------------------------------------------------------------------------------------------------------------


def converse_usage(usage: Mapping[str, Any]) -> Usage:
    """Converse's (and Nova's) usage: `inputTokens` plus the cache reads and writes is the input."""
    read = count(usage.get("cacheReadInputTokens")) or count(usage.get("cacheReadInputTokenCount"))
    write = count(usage.get("cacheWriteInputTokens")) or count(usage.get("cacheWriteInputTokenCount"))
    prompt = count(usage.get("inputTokens")) + read + write
    completion = count(usage.get("outputTokens"))
    write_1h = 0
    details = usage.get("cacheDetails")
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, Mapping) and detail.get("ttl") == "1h":  # the first, as genai-prices reads it
            write_1h = count(detail.get("inputTokens"))
            break
    return Usage(
        input=prompt,
        output=completion,
        total=prompt + completion,
        cache_read=read,
        cache_write=write,
        cache_write_1h=min(write_1h, write),
    )


def counted_usage(inputs: int, outputs: int, read: int = 0, write: int = 0) -> Usage:
    """Bedrock's own counts (headers, invocation metrics): the input count excludes the cache reads and writes."""
    prompt = inputs + read + write
    return Usage(input=prompt, output=outputs, total=prompt + outputs, cache_read=read, cache_write=write)


def _metrics_usage(metrics: Mapping[str, Any]) -> Usage:
    return counted_usage(
        count(metrics.get("inputTokenCount")),
        count(metrics.get("outputTokenCount")),
        count(metrics.get("cacheReadInputTokenCount")),
        count(metrics.get("cacheWriteInputTokenCount")),
    )


def _header_count(headers: Mapping[str, str], name: str) -> int:
    try:
        return max(int(headers.get(f"x-amzn-bedrock-{name}-token-count") or 0), 0)
    except ValueError:
        return 0


# Answers, per family ----------------------------------------------------------------------------------------------


def _finish(answer: Answer, reason: Any) -> None:
    if isinstance(reason, str) and reason:
        answer.finish_reasons = [reason]


def _said(answer: Answer, text: Any) -> None:
    if isinstance(text, str) and text:
        answer.output.append(text)


def _message_text(answer: Answer, output: Any) -> None:
    message = output.get("message") if isinstance(output, Mapping) else None
    for block in message.get("content") or () if isinstance(message, Mapping) else ():
        if isinstance(block, Mapping):
            _said(answer, block.get("text"))


def read_converse(answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
    """A whole Converse answer (also Nova's invoke body, the same shape)."""
    _finish(answer, data.get("stopReason"))
    usage = data.get("usage")
    if isinstance(usage, Mapping):
        answer.usage = converse_usage(usage)
    if capture:
        _message_text(answer, data.get("output"))


def read_converse_event(answer: Answer, name: str, data: Mapping[str, Any], *, capture: bool) -> None:
    """One ConverseStream event (also Nova's invoke stream chunks, each `{name: data}`)."""
    if name == "contentBlockDelta":
        if capture:
            delta = data.get("delta")
            _said(answer, delta.get("text") if isinstance(delta, Mapping) else None)
    elif name == "messageStop":
        _finish(answer, data.get("stopReason"))
    elif name == "metadata":
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            answer.usage = converse_usage(usage)
        answer.saw_end = True


def read_exception(answer: Answer, name: str, data: Mapping[str, Any]) -> None:
    """An exception event (`exception:<type>` from the event-stream splitter, or the type itself)."""
    answer.fail(name.removeprefix("exception:"), data.get("message") or data.get("Message") or "")


def read_invoke(answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
    """A whole InvokeModel answer, its family told by its shape."""
    if data.get("type") == "message" or ("stop_reason" in data and "content" in data):  # Anthropic Messages
        anthropic.read_message(answer, data, capture=capture)
        answer.response_model = None  # Anthropic's name of the model, not the Bedrock id priced
    elif "generation" in data:  # Meta Llama
        _finish(answer, data.get("stop_reason"))
        _llama_counts(answer, data)
        if capture:
            _said(answer, data.get("generation"))
    elif "output" in data:  # Amazon Nova (messages-v1)
        read_converse(answer, data, capture=capture)
    elif "results" in data:  # Amazon Titan text
        results = [r for r in data["results"] if isinstance(r, Mapping)] if isinstance(data["results"], list) else []
        for result in results:
            _finish(answer, result.get("completionReason"))
            if capture:
                _said(answer, result.get("outputText"))
        prompt = count(data.get("inputTextTokenCount"))
        answer.usage = counted_usage(prompt, sum(count(r.get("tokenCount")) for r in results))
    elif "inputTextTokenCount" in data:  # Amazon Titan embeddings
        answer.usage = counted_usage(count(data["inputTextTokenCount"]), 0)
    elif "choices" in data:  # OpenAI-shaped bodies (Mistral's chat models, gpt-oss, DeepSeek...)
        _choices(answer, data, capture)
        if isinstance(data.get("usage"), Mapping):
            answer.usage = openai.usage_from(data["usage"])
    else:  # Mistral `outputs`, Cohere `finish_reason` / `generations`, Cohere Embed: no counts (headers have them)
        _other_family(answer, data, capture)
    ids = data.get("id") or data.get("response_id")
    if answer.response_id is None and isinstance(ids, str) and ids:
        answer.response_id = ids


def _llama_counts(answer: Answer, data: Mapping[str, Any]) -> None:
    """Llama's counts: the prompt's in the first chunk only, the generation's so far in each."""
    prompt = count(data.get("prompt_token_count")) or (answer.usage.input if answer.usage else 0)
    generated = count(data.get("generation_token_count")) or (answer.usage.output if answer.usage else 0)
    if prompt or generated:
        answer.usage = counted_usage(prompt, generated)


def _choices(answer: Answer, data: Mapping[str, Any], capture: bool) -> None:
    for choice in data["choices"] if isinstance(data["choices"], list) else ():
        if isinstance(choice, Mapping):
            _finish(answer, choice.get("finish_reason") or choice.get("stop_reason"))
            if capture:
                part = choice.get("message") or choice.get("delta")
                _said(answer, part.get("content") if isinstance(part, Mapping) else None)


def _other_family(answer: Answer, data: Mapping[str, Any], capture: bool) -> None:
    for key in ("outputs", "generations"):  # Mistral; Cohere Command
        for item in data.get(key) or () if isinstance(data.get(key), list) else ():
            if isinstance(item, Mapping):
                _finish(answer, item.get("stop_reason") or item.get("finish_reason"))
                if capture:
                    _said(answer, item.get("text"))
    _finish(answer, data.get("finish_reason"))  # Cohere Command R
    if capture and "outputs" not in data:
        _said(answer, data.get("text"))


def read_chunk(answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
    """One InvokeModel stream chunk, its family told by its shape; the last one has Bedrock's counts."""
    if "type" in data:  # Anthropic Messages stream events
        anthropic.read_stream_event(answer, data, capture=capture)
        answer.response_model = None
    elif not _CONVERSE_EVENTS.isdisjoint(data):  # Amazon Nova
        for name, event in data.items():
            if name in _CONVERSE_EVENTS and isinstance(event, Mapping):
                read_converse_event(answer, name, event, capture=capture)
    elif "generation" in data:  # Meta Llama
        _finish(answer, data.get("stop_reason"))
        _llama_counts(answer, data)
        if capture:
            _said(answer, data.get("generation"))
    elif "outputText" in data:  # Amazon Titan text
        _finish(answer, data.get("completionReason"))
        prompt = count(data.get("inputTextTokenCount")) or (answer.usage.input if answer.usage else 0)
        answer.usage = counted_usage(prompt, count(data.get("totalOutputTextTokenCount")))
        if capture:
            _said(answer, data.get("outputText"))
    elif "choices" in data:
        _choices(answer, data, capture)
        if isinstance(data.get("usage"), Mapping):
            answer.usage = openai.usage_from(data["usage"])
    elif "is_finished" in data:  # Cohere Command R
        if data.get("is_finished") is True:
            _finish(answer, data.get("finish_reason"))
        elif capture:
            _said(answer, data.get("text"))
    else:
        _other_family(answer, data, capture)
    metrics = data.get(_METRICS)
    if isinstance(metrics, Mapping):
        if answer.usage is None:  # the family's own counts, when it reports them, say more (cache kinds)
            answer.usage = _metrics_usage(metrics)
        answer.saw_end = True


def _chunk_bytes(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The family's chunk inside a `chunk` event: raw bytes (botocore-parsed) or base64 (on the wire)."""
    raw = data.get("bytes")
    if isinstance(raw, str):
        raw = base64.b64decode(raw)
    return loads(bytes(raw)) if isinstance(raw, (bytes, bytearray)) and raw else None


# Requests ---------------------------------------------------------------------------------------------------------


def _read_config(body: Mapping[str, Any], request: Request) -> None:
    read_params(body, request.attributes, _PARAMS, stop_keys=_STOP_KEYS)
    for key in _CONFIGS:
        config = body.get(key)
        if isinstance(config, Mapping):
            read_params(config, request.attributes, _PARAMS, stop_keys=_STOP_KEYS)


# Endpoints --------------------------------------------------------------------------------------------------------


class _Bedrock(Endpoint):
    provider = PROVIDER
    actions: tuple[str, ...] = ()

    def matches(self, path: str) -> bool:
        return path.endswith(self.actions) and _MODEL in path

    def model_of(self, body: Mapping[str, Any], path: str) -> str:
        found = model_from_path(path)
        if found:
            return found
        model = body.get("model")  # AnthropicBedrock, before the SDK moves it into the path
        return model if isinstance(model, str) else ""

    def read_request(self, body: Mapping[str, Any], path: str, *, keep_body: bool) -> Request | None:
        request = super().read_request(body, path, keep_body=keep_body)
        if request is not None and keep_body:
            request.body = {k: body[k] for k in _INPUTS if k in body}
        return request

    def streams(self, body: Mapping[str, Any], path: str) -> bool:
        if _MODEL in path:
            return path.endswith("-stream")
        return bool(body.get("stream"))

    def read_headers(self, answer: Answer, status: int, headers: Mapping[str, str]) -> None:
        if status >= 400:
            kind = headers.get("x-amzn-errortype")
            if kind:
                answer.error_type = error_code(kind)
        elif "x-amzn-bedrock-input-token-count" in headers:  # the body's own counts, when it has some, win
            answer.usage = counted_usage(
                _header_count(headers, "input"),
                _header_count(headers, "output"),
                _header_count(headers, "cache-read-input"),
                _header_count(headers, "cache-write-input"),
            )

    def read_error(self, answer: Answer, body: bytes) -> None:
        named = answer.error_type  # the x-amzn-ErrorType header's, which wins as in botocore
        super().read_error(answer, body)
        data = loads(body) if body else None
        kind = named
        if kind is None and data is not None:
            found = data.get("code") or data.get("Code") or data.get("__type")
            kind = error_code(found) if isinstance(found, str) else None
        answer.error_type = kind

    def error_type(self, provider_error: str | None) -> str | None:
        if not provider_error:
            return None
        return ERROR_TYPES.get(error_code(provider_error.removeprefix("exception:")).lower())

    def on_event(self, answer: Answer, name: str, data: Mapping[str, Any], *, capture: bool) -> None:
        if name.startswith("exception:"):
            read_exception(answer, name, data)
        else:
            self.on_stream_event(answer, name, data, capture=capture)

    def on_stream_event(self, answer: Answer, name: str, data: Mapping[str, Any], *, capture: bool) -> None:
        """One event of the answer's stream (not an exception)."""


class Converse(_Bedrock):
    api = "bedrock.converse"
    operation = "chat"
    actions = ("/converse", "/converse-stream")

    def read_params(self, body: Mapping[str, Any], request: Request) -> None:
        _read_config(body, request)

    def read_whole(self, answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
        read_converse(answer, data, capture=capture)

    def on_stream_event(self, answer: Answer, name: str, data: Mapping[str, Any], *, capture: bool) -> None:
        read_converse_event(answer, name, data, capture=capture)


class Invoke(_Bedrock):
    api = "bedrock.invoke"
    operation = "chat"
    actions = ("/invoke", "/invoke-with-response-stream")

    def read_params(self, body: Mapping[str, Any], request: Request) -> None:
        if "anthropic_version" in body or "model" in body:  # Claude's Messages body (AnthropicBedrock's too)
            anthropic.read_anthropic_params(body, request)
        else:
            _read_config(body, request)

    def read_whole(self, answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
        read_invoke(answer, data, capture=capture)

    def on_stream_event(self, answer: Answer, name: str, data: Mapping[str, Any], *, capture: bool) -> None:
        if name == "chunk":
            chunk = _chunk_bytes(data)
            if chunk is not None:
                read_chunk(answer, chunk, capture=capture)


class InvokeEmbeddings(Invoke):
    """InvokeModel of an embedding model (Titan Embeddings, Cohere Embed), told by its model id."""

    api = "bedrock.invoke_embeddings"
    operation = "embeddings"

    def matches(self, path: str) -> bool:
        return super().matches(path) and "embed" in model_from_path(path)


CONVERSE = Converse()
INVOKE = Invoke()
INVOKE_EMBEDDINGS = InvokeEmbeddings()
ENDPOINTS: tuple[Endpoint, ...] = (CONVERSE, INVOKE_EMBEDDINGS, INVOKE)

# botocore operation -> (endpoint, the path's action).
OPERATIONS: Mapping[str, tuple[Invoke | Converse, str]] = {
    "Converse": (CONVERSE, "converse"),
    "ConverseStream": (CONVERSE, "converse-stream"),
    "InvokeModel": (INVOKE, "invoke"),
    "InvokeModelWithResponseStream": (INVOKE, "invoke-with-response-stream"),
}


def read_operation(operation: str, params: Mapping[str, Any], *, keep_body: bool) -> tuple[Endpoint, Request] | None:
    """The endpoint and request of a botocore `bedrock-runtime` operation from its parameters (`modelId`, and
    Converse's own fields or InvokeModel's JSON `body`), or None for another operation."""
    found = OPERATIONS.get(operation)
    model = params.get("modelId")
    if found is None or not isinstance(model, str) or not model:
        return None
    endpoint, action = found
    path = f"{_MODEL}{model}/{action}"
    body: Mapping[str, Any] | None = params
    if endpoint is INVOKE:
        raw = params.get("body")
        if isinstance(raw, bytearray):
            raw = bytes(raw)
        body = loads(raw) if isinstance(raw, (bytes, str)) and raw else None
        if "embed" in model:
            endpoint = INVOKE_EMBEDDINGS
    request = endpoint.read_request(body or {}, path, keep_body=keep_body)
    return (endpoint, request) if request is not None else None
