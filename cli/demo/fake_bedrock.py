"""The fake provider's Amazon Bedrock runtime API: `/model/{modelId}/converse`, `/converse-stream`, `/invoke` and
`/invoke-with-response-stream`, the model id URL-encoded in the path (a foundation model, a cross-region inference
profile such as `us.anthropic...`, or an ARN).

Answers are shaped as AWS documents them. Converse: `output.message`, `stopReason`, `usage` (`inputTokens` without
the cache reads and writes, which come apart), `metrics`. InvokeModel: each model family's own body, chosen by the
model id (Anthropic Messages, Meta Llama, Amazon Nova and Titan text/embeddings, Mistral, Cohere Command R and
Embed), with Bedrock's `x-amzn-bedrock-*-token-count` headers. Streams are AWS event streams (`application/
vnd.amazon.eventstream`): Converse's named events, or InvokeModel's `chunk` events whose `bytes` are the base64 of
the family's own chunk, the last one with `amazon-bedrock-invocationMetrics`. Errors are `{"message": ...}` bodies
named by an `x-amzn-ErrorType` header (`ERROR_CODES` by status); every answer has an `x-amzn-RequestId`.

Every answer reports the usage in the module constants below, so tests can compare exact counts. A request header
`x-fake-stream-error: <exceptionType>` ends a stream with that exception event after its first content event.
"""

from __future__ import annotations

import base64
import struct
import uuid
import zlib
from collections.abc import Callable
from urllib.parse import unquote

from .fake_api import Ctx, FakeAPI, JSONDict, Reply, dumps

__all__ = [
    "API",
    "CLAUDE_USAGE",
    "COHERE_EMBED_INPUT_TOKENS",
    "COHERE_TOKENS",
    "CONVERSE_METRICS",
    "CONVERSE_USAGE",
    "ERROR_CODES",
    "LLAMA_USAGE",
    "MISTRAL_TOKENS",
    "NOVA_USAGE",
    "REPLY_TEXT",
    "TITAN_EMBED_INPUT_TOKENS",
    "TITAN_TEXT_USAGE",
    "event_frame",
    "family",
]

# --- usage each answer reports (exactly these counts are sent) --------------------------------------------------

CONVERSE_USAGE: JSONDict = {
    "inputTokens": 318,  # without the cache reads and writes, as Bedrock reports them
    "outputTokens": 74,
    "cacheReadInputTokens": 1536,
    "cacheWriteInputTokens": 256,
    "totalTokens": 318 + 74 + 1536 + 256,
}
CONVERSE_METRICS: JSONDict = {"latencyMs": 412}
CLAUDE_USAGE: JSONDict = {
    "input_tokens": 205,
    "cache_creation_input_tokens": 128,
    "cache_read_input_tokens": 1024,
    "cache_creation": {"ephemeral_5m_input_tokens": 128, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 61,
}
LLAMA_USAGE: JSONDict = {"prompt_token_count": 27, "generation_token_count": 143}
NOVA_USAGE: JSONDict = {
    "inputTokens": 120,
    "outputTokens": 64,
    "cacheReadInputTokenCount": 512,
    "cacheWriteInputTokenCount": 0,
    "totalTokens": 120 + 64 + 512,
}
TITAN_TEXT_USAGE: JSONDict = {"inputTextTokenCount": 14, "tokenCount": 58}
TITAN_EMBED_INPUT_TOKENS = 9
MISTRAL_TOKENS = (33, 77)  # (input, output): the body has no counts, Bedrock's headers do
COHERE_TOKENS = (41, 52)
COHERE_EMBED_INPUT_TOKENS = 11

ERROR_CODES: dict[int, str] = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
"""The AWS error code the fake names an error answer by, per HTTP status (tests may change it)."""

_WORDS = ("Hello", " from", " the", " fake", " Bedrock!")
REPLY_TEXT = "".join(_WORDS)
_EVENTSTREAM = "application/vnd.amazon.eventstream"


# --- AWS event-stream framing -------------------------------------------------------------------------------------


def event_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total and header lengths) and its CRC, string headers, the payload,
    and the CRC of the whole message."""
    block = b"".join(
        bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value.encode())) + value.encode()
        for name, value in headers.items()
    )
    prelude = struct.pack(">II", 16 + len(block) + len(payload), len(block))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + block + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _event(name: str, body: JSONDict) -> bytes:
    headers = {":event-type": name, ":content-type": "application/json", ":message-type": "event"}
    return event_frame(headers, dumps(body | {"p": "abcdefghijklmnopqrstuvwxyzABCDEF"}))


def _exception(name: str, message: str) -> bytes:
    headers = {":exception-type": name, ":content-type": "application/json", ":message-type": "exception"}
    return event_frame(headers, dumps({"message": message}))


def _chunk(body: JSONDict) -> bytes:
    """An InvokeModel stream event: the family's chunk as base64 JSON bytes."""
    return _event("chunk", {"bytes": base64.b64encode(dumps(body)).decode()})


# --- requests -----------------------------------------------------------------------------------------------------


def _model(route: str) -> str:
    """The model id in `/model/{modelId}/...` (URL-decoded; an ARN keeps its slashes)."""
    rest = route.split("/model/", 1)[1]
    return unquote(rest.rsplit("/", 1)[0])


def family(model: str) -> str:
    """The model family a model id (foundation model, inference profile or ARN) names."""
    for needle, name in (
        ("anthropic.", "claude"),
        ("meta.llama", "llama"),
        ("amazon.nova", "nova"),
        ("amazon.titan-embed", "titan-embed"),
        ("amazon.titan-text", "titan-text"),
        ("mistral.", "mistral"),
        ("cohere.embed", "cohere-embed"),
        ("cohere.command", "cohere"),
    ):
        if needle in model:
            return name
    return "claude"


def _token_headers(inputs: int, outputs: int, read: int = 0, write: int = 0) -> dict[str, str]:
    found = {
        "x-amzn-bedrock-input-token-count": str(inputs),
        "x-amzn-bedrock-output-token-count": str(outputs),
        "x-amzn-bedrock-invocation-latency": "412",
    }
    if read or write:
        found["x-amzn-bedrock-cache-read-input-token-count"] = str(read)
        found["x-amzn-bedrock-cache-write-input-token-count"] = str(write)
    return found


def _invocation_metrics(inputs: int, outputs: int, read: int = 0, write: int = 0) -> JSONDict:
    found: JSONDict = {
        "inputTokenCount": inputs,
        "outputTokenCount": outputs,
        "invocationLatency": 412,
        "firstByteLatency": 96,
    }
    if read or write:
        found |= {"cacheReadInputTokenCount": read, "cacheWriteInputTokenCount": write}
    return found


def _pieces(ctx: Ctx) -> list[str]:
    return [_WORDS[i % len(_WORDS)] for i in range(max(ctx.chunks, 1))]


def _stream(reply: Reply, ctx: Ctx, events: list[bytes], first_content: int) -> None:
    """Sends the events, cut short by an exception after the first content event when the request asks."""
    failure = ctx.headers.get("x-fake-stream-error")
    if failure:
        events = [*events[: first_content + 1], _exception(failure, f"Fake {failure}.")]
    reply.stream(_EVENTSTREAM, events)


# --- Converse -----------------------------------------------------------------------------------------------------


def _converse(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    if not isinstance(req.get("messages"), list):
        _error(reply, 400, "1 validation error detected: Value null at 'messages' failed to satisfy constraint.")
        return
    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": REPLY_TEXT}]}},
        "stopReason": "end_turn",
        "usage": CONVERSE_USAGE,
        "metrics": CONVERSE_METRICS,
    }
    reply.json(body)


def _converse_stream(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    events = [_event("messageStart", {"role": "assistant"})]
    events += [_event("contentBlockDelta", {"delta": {"text": p}, "contentBlockIndex": 0}) for p in _pieces(ctx)]
    events += [
        _event("contentBlockStop", {"contentBlockIndex": 0}),
        _event("messageStop", {"stopReason": "end_turn"}),
        _event("metadata", {"usage": CONVERSE_USAGE, "metrics": CONVERSE_METRICS}),
    ]
    _stream(reply, ctx, events, 1)


# --- InvokeModel: each family's bodies ------------------------------------------------------------------------


def _claude(model: str, ctx: Ctx) -> tuple[JSONDict, list[JSONDict], dict[str, str], JSONDict]:
    usage = CLAUDE_USAGE
    read, write = usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
    message: JSONDict = {
        "id": "msg_bdrk_01" + uuid.uuid4().hex[:22],
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": REPLY_TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    start = message | {"content": [], "stop_reason": None, "usage": usage | {"output_tokens": 1}}
    chunks: list[JSONDict] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    chunks += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}} for p in _pieces(ctx)
    ]
    chunks += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
        {"type": "message_stop"},
    ]
    counts = (usage["input_tokens"], usage["output_tokens"], read, write)
    return message, chunks, _token_headers(*counts), _invocation_metrics(*counts)


def _llama(model: str, ctx: Ctx) -> tuple[JSONDict, list[JSONDict], dict[str, str], JSONDict]:
    prompt, generated = LLAMA_USAGE["prompt_token_count"], LLAMA_USAGE["generation_token_count"]
    body = {"generation": REPLY_TEXT, **LLAMA_USAGE, "stop_reason": "stop"}
    pieces = _pieces(ctx)
    chunks: list[JSONDict] = [
        {
            "generation": p,
            "prompt_token_count": prompt if i == 0 else None,
            "generation_token_count": generated if i == len(pieces) - 1 else i + 1,
            "stop_reason": "stop" if i == len(pieces) - 1 else None,
        }
        for i, p in enumerate(pieces)
    ]
    return body, chunks, _token_headers(prompt, generated), _invocation_metrics(prompt, generated)


def _nova(model: str, ctx: Ctx) -> tuple[JSONDict, list[JSONDict], dict[str, str], JSONDict]:
    usage = NOVA_USAGE
    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": REPLY_TEXT}]}},
        "stopReason": "end_turn",
        "usage": usage,
    }
    chunks: list[JSONDict] = [{"messageStart": {"role": "assistant"}}]
    chunks += [{"contentBlockDelta": {"delta": {"text": p}, "contentBlockIndex": 0}} for p in _pieces(ctx)]
    chunks += [
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        {"metadata": {"usage": usage, "metrics": {}, "trace": {}}},
    ]
    counts = (
        usage["inputTokens"],
        usage["outputTokens"],
        usage["cacheReadInputTokenCount"],
        usage["cacheWriteInputTokenCount"],
    )
    return body, chunks, _token_headers(*counts), _invocation_metrics(*counts)


def _titan_text(model: str, ctx: Ctx) -> tuple[JSONDict, list[JSONDict], dict[str, str], JSONDict]:
    prompt, generated = TITAN_TEXT_USAGE["inputTextTokenCount"], TITAN_TEXT_USAGE["tokenCount"]
    body = {
        "inputTextTokenCount": prompt,
        "results": [{"tokenCount": generated, "outputText": REPLY_TEXT, "completionReason": "FINISH"}],
    }
    pieces = _pieces(ctx)
    chunks: list[JSONDict] = [
        {
            "outputText": p,
            "index": 0,
            "totalOutputTextTokenCount": generated if i == len(pieces) - 1 else i + 1,
            "completionReason": "FINISH" if i == len(pieces) - 1 else None,
            **({"inputTextTokenCount": prompt} if i == 0 else {}),
        }
        for i, p in enumerate(pieces)
    ]
    return body, chunks, _token_headers(prompt, generated), _invocation_metrics(prompt, generated)


def _titan_embed(model: str, ctx: Ctx) -> tuple[JSONDict, list[JSONDict], dict[str, str], JSONDict]:
    vector = [((j % 17) - 8) / 64 for j in range(8)]
    body = {"embedding": vector, "embeddingsByType": {"float": vector}, "inputTextTokenCount": TITAN_EMBED_INPUT_TOKENS}
    return body, [], _token_headers(TITAN_EMBED_INPUT_TOKENS, 0), {}


def _mistral(model: str, ctx: Ctx) -> tuple[JSONDict, list[JSONDict], dict[str, str], JSONDict]:
    body = {"outputs": [{"text": REPLY_TEXT, "stop_reason": "stop"}]}
    pieces = _pieces(ctx)
    chunks: list[JSONDict] = [
        {"outputs": [{"text": p, "stop_reason": "stop" if i == len(pieces) - 1 else None}]}
        for i, p in enumerate(pieces)
    ]
    return body, chunks, _token_headers(*MISTRAL_TOKENS), _invocation_metrics(*MISTRAL_TOKENS)


def _cohere(model: str, ctx: Ctx) -> tuple[JSONDict, list[JSONDict], dict[str, str], JSONDict]:
    response_id = str(uuid.uuid4())
    body = {
        "response_id": response_id,
        "text": REPLY_TEXT,
        "generation_id": str(uuid.uuid4()),
        "chat_history": [],
        "finish_reason": "COMPLETE",
    }
    chunks: list[JSONDict] = [{"is_finished": False, "event_type": "stream-start", "generation_id": response_id}]
    chunks += [{"is_finished": False, "event_type": "text-generation", "text": p} for p in _pieces(ctx)]
    chunks.append({"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE", "response": body})
    return body, chunks, _token_headers(*COHERE_TOKENS), _invocation_metrics(*COHERE_TOKENS)


def _cohere_embed(model: str, ctx: Ctx) -> tuple[JSONDict, list[JSONDict], dict[str, str], JSONDict]:
    body = {
        "embeddings": [[((j % 17) - 8) / 64 for j in range(8)]],
        "id": str(uuid.uuid4()),
        "response_type": "embeddings_floats",
        "texts": ["hello"],
    }
    return body, [], _token_headers(COHERE_EMBED_INPUT_TOKENS, 0), {}


_Family = Callable[[str, Ctx], tuple[JSONDict, list[JSONDict], dict[str, str], JSONDict]]
_FAMILIES: dict[str, _Family] = {
    "claude": _claude,
    "llama": _llama,
    "nova": _nova,
    "titan-text": _titan_text,
    "titan-embed": _titan_embed,
    "mistral": _mistral,
    "cohere": _cohere,
    "cohere-embed": _cohere_embed,
}


def _invoke(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    model = _model(ctx.route)
    body, _, token_headers, _ = _FAMILIES[family(model)](model, ctx)
    reply.json(body, headers=token_headers)


def _invoke_stream(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    model = _model(ctx.route)
    _, chunks, _, metrics = _FAMILIES[family(model)](model, ctx)
    if not chunks:
        _error(reply, 400, "The model does not support streaming.")
        return
    last = chunks[-1] | {"amazon-bedrock-invocationMetrics": metrics}
    _stream(reply, ctx, [_chunk(c) for c in [*chunks[:-1], last]], 1)


# --- errors -------------------------------------------------------------------------------------------------------


def _error_answer(status: int, message: str | None) -> tuple[JSONDict, dict[str, str]]:
    code = ERROR_CODES.get(status, "InternalServerException" if status >= 500 else "ValidationException")
    headers = {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    return {"message": message or f"Fake {code} (HTTP {status})."}, headers


def _error(reply: Reply, status: int, message: str) -> None:
    body, headers = _error_answer(status, message)
    reply.json(body, status=status, headers=headers)


def _request_id() -> dict[str, str]:
    return {"x-amzn-RequestId": str(uuid.uuid4())}


API = FakeAPI(
    "bedrock",
    (
        ("/converse", _converse),
        ("/converse-stream", _converse_stream),
        ("/invoke", _invoke),
        ("/invoke-with-response-stream", _invoke_stream),
    ),
    _error_answer,
    _request_id,
)
