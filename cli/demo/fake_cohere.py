"""Cohere's v2 API for the fake provider: `/v2/chat` (whole, or Server-Sent Events when the body says
`"stream": true`), `/v2/embed` and `/v2/rerank`, shaped as Cohere documents them.

Usage comes twice, as Cohere reports it: `billed_units` (what Cohere bills) and `tokens` (what the model saw, its
prompt template included), plus `cached_tokens`. A request with the header `x-fake-stream-error: <message>` gets a
stream that ends in a `message-end` event with `finish_reason: "ERROR"` and that message. Errors are
`{"id": ..., "message": ...}` bodies.
"""

from __future__ import annotations

import uuid
from typing import Any

from .fake_api import Ctx, FakeAPI, JSONDict, Reply, sse

# --- usage each route reports (exactly these objects are sent) -------------------------------------------

CHAT_USAGE: JSONDict = {
    "billed_units": {"input_tokens": 412, "output_tokens": 96},
    "tokens": {"input_tokens": 478, "output_tokens": 96},  # the prompt template's 66 tokens are not billed
    "cached_tokens": 256,
}
EMBED_BILLED: JSONDict = {"input_tokens": 14}
RERANK_BILLED: JSONDict = {"search_units": 1}
FINISH_REASON = "COMPLETE"
REPLY_WORDS = ("Hello", " from", " the", " fake", " Cohere!")
REPLY_TEXT = "".join(REPLY_WORDS)
EMBEDDING_DIM = 8
_SSE = "text/event-stream"
_MESSAGES = {
    400: "invalid request: message must be at least 1 token long or tool results must be specified.",
    401: "invalid api token",
    404: "model 'fake' not found, make sure the correct model ID was used and that you have access to the model.",
    422: "invalid request: the request could not be processed.",
    429: "You are using a Trial key, which is limited to 10 API calls / minute. Please try again later.",
    500: "internal server error, this has been reported to our developers.",
    503: "the service is temporarily unavailable, please try again later.",
}


def _id() -> str:
    return str(uuid.uuid4())


def _headers() -> dict[str, str]:
    return {"x-debug-trace-id": uuid.uuid4().hex}


def error(status: int, message: str | None) -> tuple[JSONDict, dict[str, str]]:
    """Cohere's error body for an HTTP status."""
    return {"id": _id(), "message": message or _MESSAGES.get(status, f"fake error (HTTP {status})")}, {}


def _words(n: int) -> list[str]:
    return [REPLY_WORDS[i % len(REPLY_WORDS)] for i in range(n)]


def chat(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    """`/v2/chat`: a whole message, or its stream of events."""
    message_id = _id()
    if req.get("stream") is not True:
        reply.json(
            {
                "id": message_id,
                "message": {"role": "assistant", "content": [{"type": "text", "text": REPLY_TEXT}]},
                "finish_reason": FINISH_REASON,
                "usage": CHAT_USAGE,
            }
        )
        return
    empty = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    events: list[tuple[str, JSONDict]] = [
        ("message-start", {"id": message_id, "delta": {"message": empty}}),
        ("content-start", {"index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
    ]
    for word in _words(ctx.chunks):
        events.append(("content-delta", {"index": 0, "delta": {"message": {"content": {"text": word}}}}))
    events.append(("content-end", {"index": 0}))
    failure = ctx.headers.get("x-fake-stream-error")
    end: JSONDict = {"finish_reason": FINISH_REASON, "usage": CHAT_USAGE}
    if failure:
        end = {"finish_reason": "ERROR", "error": failure}
    events.append(("message-end", {"delta": end}))
    reply.stream(_SSE, [sse({"type": kind, **data}, kind) for kind, data in events])


def embedding(index: int) -> list[float]:
    """The vector returned for text `index`."""
    return [((index * EMBEDDING_DIM + j) % 13 - 6) / 32 for j in range(EMBEDDING_DIM)]


def embed(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    """`/v2/embed`: embeddings by type (`float` unless `embedding_types` says otherwise)."""
    given = req.get("texts")
    texts: list[Any] = given if isinstance(given, list) else []
    kinds = req.get("embedding_types") or ["float"]
    vectors: dict[str, Any] = {}
    for kind in kinds:
        if kind == "float":
            vectors[kind] = [embedding(i) for i in range(len(texts))]
        else:
            vectors[kind] = [[int(v * 64) for v in embedding(i)] for i in range(len(texts))]
    reply.json(
        {
            "id": _id(),
            "embeddings": vectors,
            "texts": texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": EMBED_BILLED},
            "response_type": "embeddings_by_type",
        }
    )


def rerank(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    """`/v2/rerank`: the documents by relevance, the first one first."""
    given = req.get("documents")
    documents: list[Any] = given if isinstance(given, list) else []
    top_n = req.get("top_n")
    top = top_n if isinstance(top_n, int) else len(documents)
    results = [{"index": i, "relevance_score": round(0.9 / (i + 1), 6)} for i in range(min(top, len(documents)))]
    reply.json(
        {"id": _id(), "results": results, "meta": {"api_version": {"version": "2"}, "billed_units": RERANK_BILLED}}
    )


API = FakeAPI("cohere", (("/v2/chat", chat), ("/v2/embed", embed), ("/v2/rerank", rerank)), error, _headers)
