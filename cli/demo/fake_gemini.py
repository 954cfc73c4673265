"""The fake provider's Gemini API: `:generateContent`, `:streamGenerateContent` (Server-Sent Events with `alt=sse`,
else a streamed JSON array), `:embedContent`, `:batchEmbedContents` and `:countTokens`, on the Gemini API paths
(`/v1beta/models/{model}:...`) and Vertex AI's (`/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:...`).

Answers are shaped as Google documents them: `candidates[].content.parts[]`, `finishReason`, `usageMetadata` with
its details by modality, `modelVersion`, `responseId`, and `{"error": {"code", "message", "status"}}` for errors.
Every answer reports the usage in the module constants below, so tests can compare exact counts: text prompts get
`GEMINI_USAGE`, prompts with inline or file data `GEMINI_MEDIA_USAGE`, image output (`responseModalities` with
IMAGE) `GEMINI_IMAGE_USAGE`. A request header `x-fake-stream-error: STATUS` ends a stream with an error event.
"""

from __future__ import annotations

import base64
import json
import random
import string
import time
from typing import Any

from .fake_api import Ctx, FakeAPI, JSONDict, Reply, dumps

__all__ = [
    "API",
    "GEMINI_EMBED_USAGE",
    "GEMINI_IMAGE_USAGE",
    "GEMINI_MEDIA_USAGE",
    "GEMINI_USAGE",
    "REPLY_TEXT",
    "STATUS_NAMES",
    "reply_text",
]

# --- usage each answer reports (exactly these objects are sent) ------------------------------------------

GEMINI_USAGE: JSONDict = {
    "promptTokenCount": 1342,  # includes the cached tokens
    "candidatesTokenCount": 187,
    "totalTokenCount": 1785,  # prompt + candidates + thoughts
    "cachedContentTokenCount": 1024,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1342}],
    "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 1024}],
    "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 187}],
    "thoughtsTokenCount": 256,
}
GEMINI_MEDIA_USAGE: JSONDict = {
    "promptTokenCount": 2410,
    "candidatesTokenCount": 96,
    "totalTokenCount": 2690,  # prompt + candidates + tool use + thoughts
    "cachedContentTokenCount": 512,
    "promptTokensDetails": [
        {"modality": "TEXT", "tokenCount": 310},
        {"modality": "IMAGE", "tokenCount": 516},
        {"modality": "AUDIO", "tokenCount": 800},
        {"modality": "VIDEO", "tokenCount": 784},
    ],
    "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 256}, {"modality": "AUDIO", "tokenCount": 256}],
    "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 96}],
    "toolUsePromptTokenCount": 120,
    "toolUsePromptTokensDetails": [{"modality": "TEXT", "tokenCount": 120}],
    "thoughtsTokenCount": 64,
}
GEMINI_IMAGE_USAGE: JSONDict = {
    "promptTokenCount": 12,
    "candidatesTokenCount": 1290,
    "totalTokenCount": 1302,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}],
    "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}],
}
GEMINI_EMBED_USAGE: JSONDict = {
    "promptTokenCount": 9,
    "totalTokenCount": 9,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
}

# Google's canonical status names by HTTP status (google.rpc.Code).
STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_WORDS = ("Hello", " from", " the", " fake", " Gemini!")
REPLY_TEXT = "".join(_WORDS)
"""Text of every whole answer (and of streams of the default 5 chunks)."""
_PNG = base64.b64encode(bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")).decode()
_ALNUM = string.ascii_letters + string.digits
_SSE = "text/event-stream"
_JSON = "application/json; charset=UTF-8"
_MEDIA_KEYS = ('"inlineData"', '"fileData"', '"inline_data"', '"file_data"')


def reply_text(chunks: int = 5) -> str:
    """The text a stream of `chunks` chunks spells out (words of REPLY_TEXT, cycled)."""
    return "".join(_WORDS[i % len(_WORDS)] for i in range(chunks))


def error(status: int, message: str | None) -> tuple[JSONDict, dict[str, str]]:
    """Google's error body for an HTTP status."""
    name = STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    body: JSONDict = {"code": status, "message": message or f"Fake {name} (HTTP {status}).", "status": name}
    if status == 429:
        body["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0s"}]
    return {"error": body}, {}


# --- answers -----------------------------------------------------------------------------------------------


def _model(route: str) -> str:
    """The model a path names: `.../models/{model}:method` (`publishers/google/models/` on Vertex AI)."""
    head = route.rpartition(":")[0]
    return head.rsplit("/models/", 1)[-1] if "/models/" in head else head.rsplit("/", 1)[-1]


def _config(req: JSONDict) -> JSONDict:
    config = req.get("generationConfig")
    return config if isinstance(config, dict) else {}


def _usage(req: JSONDict) -> JSONDict:
    config = _config(req)
    modalities = config.get("responseModalities") or ()
    if "IMAGE" in modalities:
        return GEMINI_IMAGE_USAGE
    contents = json.dumps(req.get("contents") or req.get("content") or [])
    return GEMINI_MEDIA_USAGE if any(key in contents for key in _MEDIA_KEYS) else GEMINI_USAGE


def _head(ctx: Ctx) -> JSONDict:
    head: JSONDict = {"modelVersion": _model(ctx.route), "responseId": "".join(random.choices(_ALNUM, k=22))}
    if "/projects/" in ctx.route:  # Vertex AI also says when it made the answer
        head["createTime"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    return head


def _candidates(req: JSONDict, parts: list[JSONDict], finish: str | None) -> list[JSONDict]:
    count = _config(req).get("candidateCount")
    found = []
    for index in range(count if isinstance(count, int) and count > 0 else 1):
        candidate: JSONDict = {"content": {"parts": parts, "role": "model"}, "index": index}
        if finish is not None:
            candidate["finishReason"] = finish
        found.append(candidate)
    return found


def _parts(usage: JSONDict, text: str) -> list[JSONDict]:
    if usage is GEMINI_IMAGE_USAGE:
        return [{"inlineData": {"mimeType": "image/png", "data": _PNG}}]
    return [{"text": text}]


def _finish(req: JSONDict) -> str:
    return "MAX_TOKENS" if _config(req).get("maxOutputTokens") == 1 else "STOP"


def _generate(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    usage = _usage(req)
    body = {"candidates": _candidates(req, _parts(usage, REPLY_TEXT), _finish(req)), "usageMetadata": usage}
    reply.json(body | _head(ctx))


def _stream_chunks(req: JSONDict, ctx: Ctx) -> list[JSONDict]:
    """The chunks of a streamed answer: one text piece each, usage so far on each, the full usage on the last."""
    usage = _usage(req)
    head = _head(ctx)
    n = max(ctx.chunks, 1)
    chunks = []
    for i in range(n):
        last = i == n - 1
        so_far: JSONDict = {k: usage[k] for k in ("promptTokenCount", "promptTokensDetails") if k in usage}
        so_far["candidatesTokenCount"] = i + 1
        so_far["totalTokenCount"] = usage["promptTokenCount"] + i + 1
        parts = _parts(usage, _WORDS[i % len(_WORDS)])
        chunk = {"candidates": _candidates(req, parts, _finish(req) if last else None)}
        chunks.append(chunk | {"usageMetadata": usage if last else so_far} | head)
    failing = ctx.headers.get("x-fake-stream-error")
    if failing:
        status = int(failing)
        chunks = [*chunks[: min(2, n)], error(status, None)[0]]
    return chunks


def _stream(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    chunks = _stream_chunks(req, ctx)
    if "alt=sse" in ctx.query:
        reply.stream(_SSE, [b"data: " + dumps(chunk) + b"\r\n\r\n" for chunk in chunks])
        return
    # Without alt=sse: one JSON array, pretty-printed as Google sends it, one element per HTTP chunk.
    pieces = [(b"[" if i == 0 else b"\n,\r\n") + _pretty(chunk) for i, chunk in enumerate(chunks)]
    reply.stream(_JSON, [*pieces, b"\n]"])


def _pretty(obj: Any) -> bytes:
    return json.dumps(obj, indent=2).encode()


def embedding(index: int, dimensions: int = 8) -> list[float]:
    """The vector returned for input `index`."""
    return [((index * dimensions + j) % 17 - 8) / 64 for j in range(dimensions)]


def _dimensions(req: JSONDict) -> int:
    size = req.get("outputDimensionality")
    config = req.get("embedContentConfig")
    if size is None and isinstance(config, dict):
        size = config.get("outputDimensionality")
    return size if isinstance(size, int) and 0 < size <= 3072 else 8


def _embed(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    body: JSONDict = {"embedding": {"values": embedding(0, _dimensions(req))}, "usageMetadata": GEMINI_EMBED_USAGE}
    if "/projects/" in ctx.route or "/publishers/" in ctx.route:
        body["truncated"] = False
    reply.json(body)


def _batch_embed(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    found = req.get("requests")
    requests = found if isinstance(found, list) else [{}]
    vectors = [{"values": embedding(i, _dimensions(r if isinstance(r, dict) else {}))} for i, r in enumerate(requests)]
    reply.json({"embeddings": vectors, "usageMetadata": GEMINI_EMBED_USAGE})


def _count_tokens(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    reply.json({"totalTokens": 31, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 31}]})


API = FakeAPI(
    "gemini",
    (
        (":streamGenerateContent", _stream),
        (":generateContent", _generate),
        (":batchEmbedContents", _batch_embed),
        (":embedContent", _embed),
        (":countTokens", _count_tokens),
    ),
    error,
)
