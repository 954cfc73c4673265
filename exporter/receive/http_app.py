"""The HTTP port: OTLP/HTTP (`/v1/logs`, `/v1/traces`, `/v1/metrics`), `/metrics`, `/healthz`, `/readyz`; the
analytics API's routes are added to the same app by `serve`."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from google.rpc import code_pb2
from prometheus_client import CONTENT_TYPE_LATEST

from ..metrics import Metrics
from ..pipeline import Overloaded
from . import decode
from .ingest import Ingest, Unavailable


def create_app(
    ingest: Ingest,
    metrics: Metrics,
    *,
    ready: Callable[[], bool],
    max_request_bytes: int,
    retry_after: float,
) -> FastAPI:
    app = FastAPI(
        title="llmtally",
        summary="LLM usage, cost and audit analytics: the receiver's query API",
        version=version("llmtally"),
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )

    async def export(kind: str, request: Request) -> Response:
        media = decode.JSON if request.headers.get("content-type", "").startswith(decode.JSON) else decode.PROTOBUF
        body = await request.body()
        if len(body) > max_request_bytes:
            metrics.receiver.refused.labels("malformed").inc()
            text = f"body larger than {max_request_bytes} bytes"
            return Response(decode.status(code_pb2.INVALID_ARGUMENT, text, media), 413, media_type=media)
        try:
            message = decode.decode(
                kind,
                body,
                request.headers.get("content-type", ""),
                request.headers.get("content-encoding", ""),
                max_request_bytes,
            )
        except decode.Malformed as error:
            metrics.receiver.refused.labels("malformed").inc()
            code = 415 if isinstance(error, decode.UnsupportedMediaType) else 400
            return Response(decode.status(code_pb2.INVALID_ARGUMENT, str(error), media), code, media_type=media)
        peer = request.client.host if request.client else None
        try:
            outcome = await run_in_threadpool(ingest.export, kind, message, peer)
        except decode.Malformed as error:  # protobuf bytes are parsed by ingest
            metrics.receiver.refused.labels("malformed").inc()
            return Response(decode.status(code_pb2.INVALID_ARGUMENT, str(error), media), 400, media_type=media)
        except Overloaded as error:
            body = decode.status(code_pb2.RESOURCE_EXHAUSTED, str(error), media)
            return Response(body, 429, media_type=media, headers={"Retry-After": str(int(retry_after))})
        except Unavailable as error:
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

    @app.get("/readyz", summary="Readiness: the audit store answers and the queue has room")
    async def readyz(response: Response) -> dict[str, str]:
        if await run_in_threadpool(ready):
            return {"status": "ready"}
        response.status_code = 503
        return {"status": "not ready"}

    return app
