"""Fake LLM provider: an HTTP server speaking the OpenAI, Anthropic and Ollama wire formats.

Tests, the demo and benchmarks point the real SDKs at it::

    with FakeProvider() as fake:
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
        anthropic.Anthropic(base_url=fake.base_url, api_key="sk-ant-fake")

Routes are matched by path suffix (so ``/v1/...`` and Azure ``/openai/deployments/{dep}/...`` both work):
``/chat/completions``, ``/completions``, ``/responses``, ``/embeddings``, ``/messages`` (Anthropic; on Vertex AI
``...:rawPredict`` and ``...:streamRawPredict``), ``/api/chat`` and ``/api/generate`` (Ollama), and the plugins' routes
(`PLUGINS`). Anything else answers 404 in the OpenAI error format.
Every answer reports the usage in the module constants below, so tests can compare exact counts.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import random
import signal
import socket
import socketserver
import string
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, cast

from . import fake_bedrock, fake_cohere, fake_gemini, fake_openai_media
from .fake_api import Ctx, FakeAPI, Handler

__all__ = [
    "ANTHROPIC_RATELIMIT_HEADERS",
    "ANTHROPIC_USAGE",
    "CHAT_USAGE",
    "COMPLETIONS_USAGE",
    "EMBEDDINGS_USAGE",
    "EMBEDDING_DIM",
    "OLLAMA_USAGE",
    "OPENAI_RATELIMIT_HEADERS",
    "REPLY_TEXT",
    "RESPONSES_USAGE",
    "RESPONSE_MODELS",
    "FakeProvider",
    "RecordedRequest",
    "fake_embedding",
    "main",
    "reply_text",
]

JSONDict = dict[str, Any]

# --- usage each route reports (exactly these objects are sent) -------------------------------------------

CHAT_USAGE: JSONDict = {
    "prompt_tokens": 1284,
    "completion_tokens": 212,
    "total_tokens": 1496,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 128,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
COMPLETIONS_USAGE: JSONDict = {"prompt_tokens": 9, "completion_tokens": 16, "total_tokens": 25}
RESPONSES_USAGE: JSONDict = {
    "input_tokens": 2048,
    "input_tokens_details": {"cached_tokens": 1536, "cache_write_tokens": 0},
    "output_tokens": 340,
    "output_tokens_details": {"reasoning_tokens": 192},
    "total_tokens": 2388,
}
EMBEDDINGS_USAGE: JSONDict = {"prompt_tokens": 8, "total_tokens": 8}
ANTHROPIC_USAGE: JSONDict = {
    "input_tokens": 412,  # excludes cached tokens, as the real API does
    "cache_creation_input_tokens": 248,
    "cache_read_input_tokens": 1850,
    "cache_creation": {"ephemeral_5m_input_tokens": 248, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 96,
    "service_tier": "standard",
}
OLLAMA_USAGE: JSONDict = {
    "total_duration": 4935886791,
    "load_duration": 534986708,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 107345000,
    "eval_count": 298,
    "eval_duration": 4289432000,
}

OPENAI_RATELIMIT_HEADERS: dict[str, str] = {
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-limit-tokens": "30000000",
    "x-ratelimit-remaining-tokens": "29998716",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "2ms",
}
ANTHROPIC_RATELIMIT_HEADERS: dict[str, str] = {
    "anthropic-ratelimit-requests-limit": "4000",
    "anthropic-ratelimit-requests-remaining": "3999",
    "anthropic-ratelimit-requests-reset": "2025-09-29T18:04:31Z",
    "anthropic-ratelimit-tokens-limit": "2400000",
    "anthropic-ratelimit-tokens-remaining": "2397000",
    "anthropic-ratelimit-tokens-reset": "2025-09-29T18:04:30Z",
    "anthropic-ratelimit-input-tokens-limit": "2000000",
    "anthropic-ratelimit-input-tokens-remaining": "1997000",
    "anthropic-ratelimit-input-tokens-reset": "2025-09-29T18:04:30Z",
    "anthropic-ratelimit-output-tokens-limit": "400000",
    "anthropic-ratelimit-output-tokens-remaining": "400000",
    "anthropic-ratelimit-output-tokens-reset": "2025-09-29T18:04:30Z",
}

RESPONSE_MODELS: dict[str, str] = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-5": "gpt-5-2025-08-07",
    "gpt-5-mini": "gpt-5-mini-2025-08-07",
    "o3-mini": "o3-mini-2025-01-31",
    "o4-mini": "o4-mini-2025-04-16",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-opus-4-1": "claude-opus-4-1-20250805",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
}

_WORDS = ("Hello", " from", " the", " fake", " provider!")
REPLY_TEXT = "".join(_WORDS)
"""Plain-text answer of every non-streaming route (and of streams with the default 5 chunks)."""
EMBEDDING_DIM = 8
_SYSTEM_FINGERPRINT = "fp_f3c8d1a9e2"


def reply_text(chunks: int = 5) -> str:
    """Plain text a stream of ``chunks`` content deltas spells out (words of REPLY_TEXT, cycled)."""
    return "".join(_WORDS[i % len(_WORDS)] for i in range(chunks))


def fake_embedding(index: int) -> list[float]:
    """The vector returned for input ``index`` (exact in float32, so base64 and float forms agree)."""
    return [((index * EMBEDDING_DIM + j) % 17 - 8) / 64 for j in range(EMBEDDING_DIM)]


@dataclass
class RecordedRequest:
    """One request as received; header names are lower-cased, ``path`` keeps its query string."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any


@dataclass
class _Action:
    kind: Literal["fail", "hang", "drop"]
    times: int
    status: int = 500
    retry_after: str | None = None
    body: JSONDict | None = None
    seconds: float = 0.0


# --- small helpers ---------------------------------------------------------------------------------------

_ALNUM = string.ascii_letters + string.digits
_HEX = "0123456789abcdef"


def _rand(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(random.choices(alphabet, k=n))


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _header_block(headers: dict[str, str]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Overloaded" if status == 529 else "Error"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


_STATUS_LINES = {s.value: _status_line(s.value) for s in HTTPStatus}
_OPENAI_HEADERS = _header_block(
    {"openai-organization": "user-fake", "openai-processing-ms": "412", "openai-version": "2020-10-01"}
    | OPENAI_RATELIMIT_HEADERS
)
_ANTHROPIC_HEADERS = _header_block(
    {"anthropic-organization-id": "4f8d2c1e-7a3b-4e6f-9c5d-2b1a0e9f8d7c"} | ANTHROPIC_RATELIMIT_HEADERS
)
_SSE = b"text/event-stream; charset=utf-8"
_NDJSON = b"application/x-ndjson"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _sse(obj: Any, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + _dumps(obj) + b"\n\n"


def _split(text: str, n: int) -> list[str]:
    """Split ``text`` into ``max(n, 1)`` contiguous pieces (for JSON payloads, which must stay whole)."""
    n = max(1, min(n, len(text)))
    step, extra = divmod(len(text), n)
    out, pos = [], 0
    for i in range(n):
        end = pos + step + (1 if i < extra else 0)
        out.append(text[pos:end])
        pos = end
    return out


_STRING_FORMATS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "12:00:00",
    "uuid": "00000000-0000-4000-8000-000000000042",
    "email": "fake@example.com",
    "uri": "https://example.com/42",
}


def _fake_value(schema: Any, root: Any, depth: int = 0) -> Any:
    """A value valid against a (pydantic-style) JSON schema; strings are "42" so ``answer: str`` -> "42"."""
    if not isinstance(schema, dict) or depth > 12:
        return "42"
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _fake_value(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _fake_value((non_null or options)[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties")
        return {k: _fake_value(v, root, depth + 1) for k, v in props.items()} if isinstance(props, dict) else {}
    if kind == "array":
        return [_fake_value(schema.get("items", {}), root, depth + 1)]
    if kind in ("integer", "number"):
        return 42
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _STRING_FORMATS.get(str(schema.get("format")), "42")


def _structured_text(fmt: Any) -> str | None:
    """JSON text for a ``{"type": "json_schema", "schema": ...}`` / ``json_object`` format, else None."""
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        return _fake_json(fmt.get("schema"))
    return '{"answer": "42"}' if fmt.get("type") == "json_object" else None


def _fake_json(schema: Any) -> str:
    return json.dumps(_fake_value(schema, schema)) if isinstance(schema, dict) else '{"answer": "42"}'


def _pick_tool(tools: Any, tool_choice: Any, flavor: str) -> tuple[str, str] | None:
    """(name, JSON arguments) of the function tool the fake model "calls", or None to answer in text."""
    if not isinstance(tools, list) or not tools or tool_choice in ("none", {"type": "none"}):
        return None
    wanted = None
    if isinstance(tool_choice, dict):
        wanted = tool_choice.get("name") or (tool_choice.get("function") or {}).get("name")
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        if flavor == "chat":
            fn = tool.get("function") if tool.get("type") == "function" else None
            spec = fn if isinstance(fn, dict) else {}
            schema = spec.get("parameters")
        elif flavor == "responses":
            spec = tool if tool.get("type") == "function" else {}
            schema = spec.get("parameters")
        else:  # anthropic: client tools have no type or type "custom"
            spec = tool if tool.get("type") in (None, "custom") else {}
            schema = spec.get("input_schema")
        name = spec.get("name")
        if isinstance(name, str) and (wanted is None or wanted == name):
            return name, _fake_json(schema) if isinstance(schema, dict) else "{}"
    return None


def _model(req: JSONDict, route: str) -> str:
    model = req.get("model")
    if not isinstance(model, str) or not model:
        parts = route.split("/")
        model = parts[parts.index("deployments") + 1] if "deployments" in parts[:-1] else "fake-model"
    return RESPONSE_MODELS.get(model, model)


def _chunks_override(headers: dict[str, str], default: int) -> int:
    raw = headers.get("x-fake-chunks")
    try:
        return max(0, int(raw)) if raw is not None else default
    except ValueError:
        return default


def _iso_now() -> str:
    now = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 1_000_000_000)) + f".{now % 10**9:09d}Z"


# --- error bodies ----------------------------------------------------------------------------------------

_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-fake***."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country not supported."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    429: (
        "rate_limit_exceeded",
        "rate_limit_exceeded",
        "Rate limit reached on tokens per min (TPM): Limit 30000000, Used 29998716, Requested 2048. "
        "Please try again in 2ms.",
    ),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_ANTHROPIC_ERRORS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _error_body(flavor: str, status: int, request_id: str, message: str | None = None) -> JSONDict:
    if flavor == "anthropic":
        kind = _ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        message = message or ("Overloaded" if kind == "overloaded_error" else f"Fake {kind} (HTTP {status})")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    if flavor == "ollama":
        return {"error": message or f"fake error (HTTP {status})"}
    default = (
        "server_error" if status >= 500 else "invalid_request_error",
        None,
        f"Fake error (HTTP {status}).",
    )
    kind, code, default_message = _OPENAI_ERRORS.get(status, default)
    return {"error": {"message": message or default_message, "type": kind, "param": None, "code": code}}


# --- HTTP plumbing ---------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """No per-request logging."""

    def _dispatch(self) -> None:
        try:
            cast(_Server, self.server).provider._handle(self)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], provider: FakeProvider) -> None:
        self.provider = provider
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        with self.provider._lock:
            self.provider._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        with self.provider._lock:
            self.provider._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


_Route = Callable[["FakeProvider", _Handler, JSONDict, "Ctx"], None]


class FakeProvider:
    """A local fake of the OpenAI, Anthropic and Ollama HTTP APIs with scriptable failures."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, stream_chunks: int = 5, chunk_delay: float = 0.0
    ) -> None:
        self.host, self.port = host, port
        self.stream_chunks = stream_chunks
        self.chunk_delay = chunk_delay
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._actions: deque[_Action] = deque()
        self._conns: set[socket.socket | tuple[bytes, socket.socket]] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    def start(self) -> FakeProvider:
        """Bind and serve in a background thread; returns self."""
        if self._server is None:
            self._stopping = threading.Event()
            self._server = _Server((self.host, self.port), self)
            self.port = self._server.server_port
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fake-provider",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open keep-alive connections (hung requests are woken and dropped)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            sock = conn if isinstance(conn, socket.socket) else conn[1]
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (Anthropic and Ollama clients take this)."""
        if self._server is None:
            raise RuntimeError("FakeProvider is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``base_url + "/v1"`` for the OpenAI client."""
        return self.base_url + "/v1"

    # -- scripting --

    def fail_next(
        self, status: int, *, times: int = 1, retry_after: str | None = None, body: JSONDict | None = None
    ) -> None:
        """Answer the next ``times`` requests with ``status`` and a provider-style (or the given) body."""
        self._script(_Action("fail", times, status=status, retry_after=retry_after, body=body))

    def hang_next(self, seconds: float, *, times: int = 1) -> None:
        """Sleep ``seconds`` before answering the next ``times`` requests (to trigger client timeouts)."""
        self._script(_Action("hang", times, seconds=seconds))

    def drop_next(self, *, times: int = 1) -> None:
        """Close the socket without answering the next ``times`` requests (a connection error)."""
        self._script(_Action("drop", times))

    def reset(self) -> None:
        """Forget scripted behaviours and recorded requests."""
        with self._lock:
            self._actions.clear()
            self.requests.clear()

    def _script(self, action: _Action) -> None:
        if action.times > 0:
            with self._lock:
                self._actions.append(action)

    # -- request handling --

    def _handle(self, h: _Handler) -> None:
        body = h.read_body()
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        headers: dict[str, str] = {}
        for name, value in h.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        with self._lock:
            self.requests.append(RecordedRequest(h.command, h.path, headers, body, parsed))
            action = self._actions[0] if self._actions else None
            if action is not None:
                action.times -= 1
                if action.times <= 0:
                    self._actions.popleft()

        route = h.path.split("?", 1)[0].rstrip("/")
        plugin, plugin_handler = _plugin(route)
        flavor = plugin.name if plugin is not None else _flavor(route)
        if action is not None:
            if action.kind == "drop" or (action.kind == "hang" and self._stopping.wait(action.seconds)):
                h.drop()
                return
            if action.kind == "fail":
                self._send_error(h, flavor, action.status, action.body, action.retry_after)
                return

        handler = next((fn for suffix, fn in _ROUTES if route.endswith(suffix)), None)
        if h.command != "POST" or (handler is None and plugin_handler is None):
            message = f"Invalid URL ({h.command} {route})"
            err = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
            self._send_error(h, "openai", 404, err, None)
            return
        req = parsed if isinstance(parsed, dict) else {}
        try:
            delay = float(headers.get("x-fake-chunk-delay") or self.chunk_delay)
        except ValueError:
            delay = self.chunk_delay
        query = h.path.split("?", 1)[1] if "?" in h.path else ""
        ctx = Ctx(route, _model(req, route), _chunks_override(headers, self.stream_chunks), delay, headers, query, body)
        try:
            if plugin is not None and plugin_handler is not None:
                plugin_handler(req, ctx, _Reply(self, h, ctx, plugin))
            elif handler is not None:
                handler(self, h, req, ctx)
        except (ConnectionError, TimeoutError):
            raise
        except Exception as exc:  # a malformed request body: answer like a provider would, not with a traceback
            message = f"Fake provider could not handle the request: {exc!r}"
            self._send_error(h, flavor, 400, None, None, message)

    def _send_error(
        self,
        h: _Handler,
        flavor: str,
        status: int,
        body: JSONDict | None,
        retry_after: str | None,
        message: str | None = None,
    ) -> None:
        plugin = _PLUGINS_BY_NAME.get(flavor)
        if plugin is not None:
            payload, headers = plugin.error(status, message)
            headers = {**plugin.headers(), **headers}
            if retry_after is not None:
                headers["retry-after"] = retry_after
            self._send_json(h, body if body is not None else payload, _header_block(headers), status)
            return
        extra, request_id = _provider_headers(flavor)
        if retry_after is not None:
            extra += b"retry-after: " + retry_after.encode() + b"\r\n"
        payload = body if body is not None else _error_body(flavor, status, request_id, message)
        self._send_json(h, payload, extra, status)

    def _send_json(self, h: _Handler, payload: Any, extra: bytes, status: int = 200) -> None:
        data = _dumps(payload)
        head = _STATUS_LINES.get(status) or _status_line(status)
        head += b"content-type: application/json\r\ncontent-length: %d\r\n" % len(data) + extra
        if h.close_connection:
            head += b"connection: close\r\n"
        h.wfile.write(head + b"\r\n" + data)

    def _send_stream(self, h: _Handler, content_type: bytes, extra: bytes, events: list[bytes], ctx: Ctx) -> None:
        head = _STATUS_LINES[200] + b"content-type: " + content_type + b"\r\ncache-control: no-cache\r\n"
        head += b"transfer-encoding: chunked\r\n" + extra + b"\r\n"
        if ctx.delay <= 0:
            h.wfile.write(head + b"".join(map(_chunk, events)) + b"0\r\n\r\n")
            return
        h.wfile.write(head + _chunk(events[0]))
        for event in events[1:]:
            if self._stopping.wait(ctx.delay):
                h.drop()
                return
            h.wfile.write(_chunk(event))
        h.wfile.write(b"0\r\n\r\n")

    # -- OpenAI --

    def _chat(self, h: _Handler, req: JSONDict, ctx: Ctx) -> None:
        created = int(time.time())
        tool = _pick_tool(req.get("tools"), req.get("tool_choice"), "chat")
        fmt = req.get("response_format")
        if isinstance(fmt, dict) and isinstance(fmt.get("json_schema"), dict):
            fmt = fmt["json_schema"] | {"type": fmt.get("type")}  # chat nests the schema one level deeper
        structured = _structured_text(fmt)
        base: JSONDict = {
            "id": "chatcmpl-" + _rand(29),
            "object": "chat.completion",
            "created": created,
            "model": ctx.model,
        }
        call_id = "call_" + _rand(24)
        finish = "tool_calls" if tool else "stop"
        extra, _ = _provider_headers("openai")
        if req.get("stream") is not True:
            message: JSONDict = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
            if tool:
                fn = {"name": tool[0], "arguments": tool[1]}
                message["tool_calls"] = [{"id": call_id, "type": "function", "function": fn}]
            else:
                message["content"] = structured if structured is not None else REPLY_TEXT
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            body = base | {
                "choices": [choice],
                "usage": CHAT_USAGE,
                "service_tier": "default",
                "system_fingerprint": _SYSTEM_FINGERPRINT,
            }
            self._send_json(h, body, extra)
            return

        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        head = base | {
            "object": "chat.completion.chunk",
            "service_tier": "default",
            "system_fingerprint": _SYSTEM_FINGERPRINT,
        }
        tail = {"usage": None} if include_usage else {}

        def chunk(delta: JSONDict, finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return _sse(head | {"choices": [choice]} | tail)

        if tool:
            start = {
                "index": 0,
                "id": call_id,
                "type": "function",
                "function": {"name": tool[0], "arguments": ""},
            }
            events = [chunk({"role": "assistant", "content": None, "tool_calls": [start], "refusal": None})]
            events += [
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in _split(tool[1], ctx.chunks)
            ]
        else:
            events = [chunk({"role": "assistant", "content": "", "refusal": None})]
            events += [chunk({"content": p}) for p in _pieces(structured, ctx.chunks)]
        events.append(chunk({}, finish))
        if include_usage:
            events.append(_sse(head | {"choices": [], "usage": CHAT_USAGE}))
        events.append(b"data: [DONE]\n\n")
        self._send_stream(h, _SSE, extra, events, ctx)

    def _completions(self, h: _Handler, req: JSONDict, ctx: Ctx) -> None:
        base: JSONDict = {
            "id": "cmpl-" + _rand(29),
            "object": "text_completion",
            "created": int(time.time()),
            "model": ctx.model,
            "system_fingerprint": _SYSTEM_FINGERPRINT,
        }
        extra, _ = _provider_headers("openai")
        if req.get("stream") is not True:
            choice = {"text": REPLY_TEXT, "index": 0, "logprobs": None, "finish_reason": "stop"}
            self._send_json(h, base | {"choices": [choice], "usage": COMPLETIONS_USAGE}, extra)
            return
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        tail = {"usage": None} if include_usage else {}

        def chunk(text: str, finish_reason: str | None = None) -> bytes:
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
            return _sse(base | {"choices": [choice]} | tail)

        events = [chunk(p) for p in _word_pieces(ctx.chunks)]
        events.append(chunk("", "stop"))
        if include_usage:
            events.append(_sse(base | {"choices": [], "usage": COMPLETIONS_USAGE}))
        events.append(b"data: [DONE]\n\n")
        self._send_stream(h, _SSE, extra, events, ctx)

    def _responses(self, h: _Handler, req: JSONDict, ctx: Ctx) -> None:
        created = int(time.time())
        tool = _pick_tool(req.get("tools"), req.get("tool_choice"), "responses")
        text_cfg = req.get("text") if isinstance(req.get("text"), dict) else None
        structured = _structured_text((text_cfg or {}).get("format"))
        text = REPLY_TEXT if structured is None else structured
        resp: JSONDict = {
            "id": "resp_" + _rand(48, _HEX),
            "object": "response",
            "created_at": created,
            "status": "in_progress",
            "background": False,
            "completed_at": None,
            "error": None,
            "incomplete_details": None,
            "instructions": req.get("instructions"),
            "max_output_tokens": req.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": ctx.model,
            "output": [],
            "parallel_tool_calls": True,
            "previous_response_id": req.get("previous_response_id"),
            "prompt_cache_key": req.get("prompt_cache_key"),
            "reasoning": req.get("reasoning") or {"effort": "medium", "summary": None},
            "safety_identifier": None,
            "service_tier": "default",
            "store": req.get("store", True),
            "temperature": req.get("temperature", 1.0),
            "text": text_cfg or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": req.get("tool_choice", "auto"),
            "tools": req.get("tools", []),
            "top_logprobs": 0,
            "top_p": req.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": None,
            "user": None,
            "metadata": req.get("metadata") or {},
        }
        if tool:
            item: JSONDict = {
                "id": "fc_" + _rand(48, _HEX),
                "type": "function_call",
                "status": "completed",
                "arguments": tool[1],
                "call_id": "call_" + _rand(24),
                "name": tool[0],
            }
        else:
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
            item = {
                "id": "msg_" + _rand(48, _HEX),
                "type": "message",
                "status": "completed",
                "content": [part],
                "role": "assistant",
            }
        done = resp | {
            "status": "completed",
            "completed_at": created,
            "output": [item],
            "usage": RESPONSES_USAGE,
        }
        extra, _ = _provider_headers("openai")
        if req.get("stream") is not True:
            self._send_json(h, done, extra)
            return

        events: list[tuple[str, JSONDict]] = [("response.created", {"response": resp})]
        events.append(("response.in_progress", {"response": resp}))
        ids = {"item_id": item["id"], "output_index": 0}
        if tool:
            started = item | {"status": "in_progress", "arguments": ""}
            events.append(("response.output_item.added", {"output_index": 0, "item": started}))
            for piece in _split(tool[1], ctx.chunks):
                events.append(("response.function_call_arguments.delta", ids | {"delta": piece}))
            events.append(("response.function_call_arguments.done", ids | {"arguments": tool[1], "name": tool[0]}))
        else:
            pieces = _pieces(structured, ctx.chunks)
            text = "".join(pieces)
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
            item = item | {"content": [part]}
            done["output"] = [item]
            started = item | {"status": "in_progress", "content": []}
            cids = ids | {"content_index": 0}
            events.append(("response.output_item.added", {"output_index": 0, "item": started}))
            events.append(("response.content_part.added", cids | {"part": part | {"text": ""}}))
            for piece in pieces:
                events.append(("response.output_text.delta", cids | {"delta": piece, "logprobs": []}))
            events.append(("response.output_text.done", cids | {"text": text, "logprobs": []}))
            events.append(("response.content_part.done", cids | {"part": part}))
        events.append(("response.output_item.done", {"output_index": 0, "item": item}))
        events.append(("response.completed", {"response": done}))
        sse = [_sse({"type": kind} | data | {"sequence_number": i}, kind) for i, (kind, data) in enumerate(events)]
        self._send_stream(h, _SSE, extra, sse, ctx)

    def _embeddings(self, h: _Handler, req: JSONDict, ctx: Ctx) -> None:
        raw = req.get("input")
        count = len(raw) if isinstance(raw, list) and raw and not isinstance(raw[0], int) else 1
        as_b64 = req.get("encoding_format") == "base64"
        data = []
        for i in range(count):
            vec: Any = _embedding_b64(i) if as_b64 else fake_embedding(i)
            data.append({"object": "embedding", "index": i, "embedding": vec})
        body = {"object": "list", "data": data, "model": ctx.model, "usage": EMBEDDINGS_USAGE}
        self._send_json(h, body, _provider_headers("openai")[0])

    # -- Anthropic --

    def _messages(self, h: _Handler, req: JSONDict, ctx: Ctx) -> None:
        tool = _pick_tool(req.get("tools"), req.get("tool_choice"), "anthropic")
        structured = _structured_text((req.get("output_config") or {}).get("format") or req.get("output_format"))
        tool_id = "toolu_01" + _rand(22)
        stop_reason = "tool_use" if tool else "end_turn"
        msg: JSONDict = {
            "id": "msg_01" + _rand(22),
            "type": "message",
            "role": "assistant",
            "model": ctx.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": ANTHROPIC_USAGE | {"output_tokens": 1},
        }
        extra, _ = _provider_headers("anthropic")
        if req.get("stream") is not True:
            block: JSONDict = (
                {"type": "tool_use", "id": tool_id, "name": tool[0], "input": json.loads(tool[1])}
                if tool
                else {"type": "text", "text": REPLY_TEXT if structured is None else structured}
            )
            body = msg | {"content": [block], "stop_reason": stop_reason, "usage": ANTHROPIC_USAGE}
            self._send_json(h, body, extra)
            return

        events = [
            _sse({"type": "message_start", "message": msg}, "message_start"),
            _sse({"type": "ping"}, "ping"),
        ]
        if tool:
            start: JSONDict = {"type": "tool_use", "id": tool_id, "name": tool[0], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *_split(tool[1], ctx.chunks)]]
        else:
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(structured, ctx.chunks)]
        events.append(_sse({"type": "content_block_start", "index": 0, "content_block": start}, "content_block_start"))
        for delta in deltas:
            events.append(_sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta"))
        events.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        final_usage = {k: ANTHROPIC_USAGE[k] for k in _DELTA_USAGE_KEYS}
        delta_event = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": final_usage,
        }
        events.append(_sse(delta_event, "message_delta"))
        events.append(_sse({"type": "message_stop"}, "message_stop"))
        self._send_stream(h, _SSE, extra, events, ctx)

    # -- Ollama --

    def _ollama(self, h: _Handler, req: JSONDict, ctx: Ctx) -> None:
        is_chat = ctx.route.endswith("/api/chat")
        fmt = req.get("format")
        structured = _fake_json(fmt) if isinstance(fmt, dict) else '{"answer": "42"}' if fmt == "json" else None

        def obj(piece: str, done: bool) -> JSONDict:
            out: JSONDict = {"model": ctx.model, "created_at": _iso_now()}
            if is_chat:
                out["message"] = {"role": "assistant", "content": piece}
            else:
                out["response"] = piece
            out["done"] = done
            if done:
                out["done_reason"] = "stop"
                if not is_chat:
                    out["context"] = [128006, 882, 128007, 271, 9906, 0]
                out.update(OLLAMA_USAGE)
            return out

        if req.get("stream") is False:
            self._send_json(h, obj(REPLY_TEXT if structured is None else structured, True), b"")
            return
        lines = [_dumps(obj(p, False)) + b"\n" for p in _pieces(structured, ctx.chunks)]
        lines.append(_dumps(obj("", True)) + b"\n")
        self._send_stream(h, _NDJSON, b"", lines, ctx)


_DELTA_USAGE_KEYS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)
_EMBEDDINGS_B64 = [base64.b64encode(struct.pack(f"<{EMBEDDING_DIM}f", *fake_embedding(i))).decode() for i in range(64)]


def _embedding_b64(index: int) -> str:
    if index < len(_EMBEDDINGS_B64):
        return _EMBEDDINGS_B64[index]
    return base64.b64encode(struct.pack(f"<{EMBEDDING_DIM}f", *fake_embedding(index))).decode()


def _word_pieces(n: int) -> list[str]:
    return [_WORDS[i % len(_WORDS)] for i in range(n)]


def _pieces(structured: str | None, n: int) -> list[str]:
    """Stream deltas: words of the plain reply, or the structured JSON split into n whole-covering parts."""
    return _word_pieces(n) if structured is None else _split(structured, n)


def _flavor(route: str) -> str:
    if route.endswith(("/messages", *_VERTEX_CLAUDE)):
        return "anthropic"
    if route.endswith(("/api/chat", "/api/generate")):
        return "ollama"
    return "openai"


def _provider_headers(flavor: str) -> tuple[bytes, str]:
    """Per-answer headers (request id + static rate-limit block) and the request id."""
    if flavor == "openai":
        rid = "req_" + _rand(32, _HEX)
        return b"x-request-id: " + rid.encode() + b"\r\n" + _OPENAI_HEADERS, rid
    if flavor == "anthropic":
        rid = "req_011C" + _rand(20)
        return b"request-id: " + rid.encode() + b"\r\n" + _ANTHROPIC_HEADERS, rid
    return b"", ""


# Claude on Vertex AI: `/projects/{p}/locations/{r}/publishers/anthropic/models/{model}:rawPredict` (or
# `:streamRawPredict`), the Messages API's bodies without `model`, which the path names (`claude-sonnet-4-5@20250929`).
_VERTEX_CLAUDE = (":rawPredict", ":streamRawPredict")


def _vertex_messages(fake: FakeProvider, h: _Handler, req: JSONDict, ctx: Ctx) -> None:
    """A Messages answer naming the model of the path (`@` before its version, as Vertex AI spells it, becomes `-`)."""
    model = ctx.route.rsplit("/models/", 1)[-1].split(":", 1)[0]
    ctx.model = RESPONSE_MODELS.get(model, model.replace("@", "-")) if model else ctx.model
    fake._messages(h, req, ctx)


_ROUTES: list[tuple[str, _Route]] = [
    ("/chat/completions", FakeProvider._chat),
    ("/completions", FakeProvider._completions),
    ("/responses", FakeProvider._responses),
    ("/embeddings", FakeProvider._embeddings),
    ("/messages", FakeProvider._messages),
    (":rawPredict", _vertex_messages),
    (":streamRawPredict", _vertex_messages),
    ("/api/chat", FakeProvider._ollama),
    ("/api/generate", FakeProvider._ollama),
]


# Provider APIs served by their own modules (routes, answers, error bodies): checked before the routes above.
PLUGINS: tuple[FakeAPI, ...] = (fake_openai_media.API, fake_gemini.API, fake_bedrock.API, fake_cohere.API)
_PLUGINS_BY_NAME = {api.name: api for api in PLUGINS}


def _plugin(route: str) -> tuple[FakeAPI | None, Handler | None]:
    for api in PLUGINS:
        found = api.handler(route)
        if found is not None:
            return api, found
    return None, None


class _Reply:
    """How a plugin's handler answers (see `fake_api.Reply`)."""

    def __init__(self, provider: FakeProvider, h: _Handler, ctx: Ctx, api: FakeAPI) -> None:
        self._provider, self._h, self._ctx, self._api = provider, h, ctx, api

    def _extra(self, headers: dict[str, str] | None) -> bytes:
        return _header_block({**self._api.headers(), **(headers or {})})

    def json(self, payload: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._provider._send_json(self._h, payload, self._extra(headers), status)

    def raw(self, content_type: str, data: bytes, *, headers: dict[str, str] | None = None) -> None:
        head = _STATUS_LINES[200] + b"content-type: " + content_type.encode() + b"\r\n"
        head += b"content-length: %d\r\n" % len(data) + self._extra(headers)
        self._h.wfile.write(head + b"\r\n" + data)

    def stream(self, content_type: str, chunks: list[bytes], *, headers: dict[str, str] | None = None) -> None:
        self._provider._send_stream(self._h, content_type.encode(), self._extra(headers), chunks, self._ctx)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m llmtally.demo.fake_provider [--port N] [--chunks N]``: print the base URL, serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=5, help="content deltas per streamed answer")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks")
    args = parser.parse_args(argv)
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    # Block the signals before starting threads (they inherit the mask), then wait for one in this thread.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with FakeProvider(args.host, args.port, stream_chunks=args.chunks, chunk_delay=args.chunk_delay) as fake:
        print(fake.base_url, flush=True)
        signal.sigwait(stop_signals)


if __name__ == "__main__":
    main()
