"""The HTTP port: OTLP/HTTP (`/v1/logs`, `/v1/traces`, `/v1/metrics`), `/metrics`, `/healthz`, `/readyz`; the
analytics API's routes are added to the same app by `serve`."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from google.rpc import code_pb2
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import ClientDisconnect

from ..metrics import Metrics
from ..pipeline import Overloaded
from . import decode, limits
from .credentials import CHALLENGE, Sender, Senders, Unauthenticated
from .ingest import Ingest, Unavailable

CLOSE = {"Connection": "close"}  # on answers given before the body was read whole: the rest is never read


def create_app(
    ingest: Ingest,
    metrics: Metrics,
    *,
    ready: Callable[[], str | None],
    max_request_bytes: int,
    retry_after: float,
    senders: Senders | None = None,
    max_concurrent: int,
) -> FastAPI:
    """`ready` says why the receiver is not ready (None when it is); OTLP is taken from `senders` only (default:
    anyone). The OpenAPI document is served by the API's router, behind its tokens."""
    senders = senders or Senders()
    slots = limits.Slots(max_concurrent)  # OTLP requests in flight: past them 429, before the body is read
    app = FastAPI(
        title="llmtally",
        summary="LLM usage, cost and audit analytics: the receiver's query API",
        version=version("llmtally"),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    async def export(kind: str, request: Request) -> Response:
        media = decode.JSON if request.headers.get("content-type", "").startswith(decode.JSON) else decode.PROTOBUF
        try:  # before the body is read: an unknown sender costs nothing
            sender = senders.sender(request.headers.get("authorization"))
        except Unauthenticated as error:
            metrics.receiver.refused.labels("unauthenticated").inc()
            body = decode.status(code_pb2.UNAUTHENTICATED, str(error), media)
            return Response(body, 401, media_type=media, headers={"WWW-Authenticate": CHALLENGE, **CLOSE})
        if not slots.take():  # before the body is read: a request past the slots costs nothing
            metrics.receiver.refused.labels("busy").inc()
            text = f"{slots.size} OTLP/HTTP requests are in flight (receiver.max_concurrent_http_requests)"
            body = decode.status(code_pb2.RESOURCE_EXHAUSTED, text, media)
            return Response(body, 429, media_type=media, headers={"Retry-After": str(int(retry_after)), **CLOSE})
        try:
            return await take(kind, request, media, sender)
        finally:
            slots.give()

    async def take(kind: str, request: Request, media: str, sender: Sender) -> Response:
        """An export request that has a slot: its body read against the limit, then stored."""
        headers = request.headers
        try:
            given = decode.media_type(headers.get("content-type", ""))
            body = await limits.read_body(
                request.stream(), headers.get("content-encoding", ""), headers.get("content-length"), max_request_bytes
            )
        except decode.Malformed as error:  # the rest of the body is not read: the connection is closed
            too_large = isinstance(error, decode.TooLarge)
            metrics.receiver.refused.labels("too_large" if too_large else "malformed").inc()
            code = 413 if too_large else 415 if isinstance(error, decode.UnsupportedMediaType) else 400
            status = decode.status(code_pb2.INVALID_ARGUMENT, str(error), media)
            return Response(status, code, media_type=media, headers=CLOSE)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it
        peer = request.client.host if request.client else None
        try:
            outcome = await run_in_threadpool(ingest.export, kind, body, peer, sender, given)
        except decode.Malformed as error:  # the body is parsed by ingest (in a worker process when there are some)
            limits.release(error)
            metrics.receiver.refused.labels("malformed").inc()
            return Response(decode.status(code_pb2.INVALID_ARGUMENT, str(error), media), 400, media_type=media)
        except Overloaded as error:
            limits.release(error)
            body = decode.status(code_pb2.RESOURCE_EXHAUSTED, str(error), media)
            return Response(body, 429, media_type=media, headers={"Retry-After": str(int(retry_after))})
        except Unavailable as error:
            limits.release(error)
            body = decode.status(code_pb2.UNAVAILABLE, str(error), media)
            return Response(body, 503, media_type=media, headers={"Retry-After": str(int(retry_after))})
        return Response(decode.response(kind, outcome.rejected, outcome.message, media), 200, media_type=media)

    @app.post("/v1/logs", include_in_schema=False)
    async def logs(request: Request) -> Response:
        return await export("logs", request)

    @app.post("/v1/traces", include_in_schema=False)
    async def traces(request: Request) -> Response:
        return await export("traces", request)

    @app.post("/v1/metrics", include_in_schema=False)
    async def otlp_metrics(request: Request) -> Response:
        return await export("metrics", request)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(await run_in_threadpool(metrics.exposition), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", summary="Liveness: the process serves requests")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the audit store takes writes and the queue has room")
    async def readyz(response: Response) -> dict[str, str]:
        why = await run_in_threadpool(ready)
        if why is None:
            return {"status": "ready"}
        response.status_code = 503
        return {"status": "not ready", "reason": why}

    return app
