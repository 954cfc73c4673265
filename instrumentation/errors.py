"""A bounded `error.type` for a failed call, from its HTTP status or its exception."""

from __future__ import annotations

RATE_LIMIT = "rate_limit"
INVALID_REQUEST = "invalid_request"
AUTH_ERROR = "auth_error"
MODEL_ERROR = "model_error"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
SERVER_ERROR = "server_error"
STREAM_ERROR = "stream_error"
OTHER = "_OTHER"

ERROR_TYPES = frozenset(
    {RATE_LIMIT, INVALID_REQUEST, AUTH_ERROR, MODEL_ERROR, TIMEOUT, CONNECTION_ERROR, SERVER_ERROR, STREAM_ERROR, OTHER}
)


def from_status(status: int) -> str:
    """The error type of an HTTP error status."""
    if status == 429:
        return RATE_LIMIT
    if status in (401, 403):
        return AUTH_ERROR
    if status == 404:
        return MODEL_ERROR
    if status in (408, 504):
        return TIMEOUT
    if status >= 500:
        return SERVER_ERROR
    return INVALID_REQUEST


# A connection that broke, or a body cut short (httpx, then aiohttp: google-genai's async transport).
_BROKEN: tuple[str, ...] = ("RemoteProtocolError", "ReadError", "ProtocolError", "StreamError")
_BROKEN += ("ClientConnectionError", "ClientPayloadError")


def from_exception(error: BaseException, *, in_body: bool = False) -> str:
    """The error type of an exception raised by an SDK or an HTTP client (matched by class names, so no
    SDK needs to be imported). A broken connection is a `stream_error` once the answer's body was flowing
    (`in_body`), a `connection_error` before any answer."""
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and status >= 400:
        return from_status(status)
    names = [cls.__name__ for cls in type(error).__mro__]
    if any("Timeout" in name for name in names):
        return TIMEOUT
    if any(n in ("ConnectError", "APIConnectionError", "NetworkError", "ConnectionError") for n in names):
        return CONNECTION_ERROR
    if any(n in _BROKEN for n in names):
        return STREAM_ERROR if in_body else CONNECTION_ERROR
    return OTHER


def from_provider(kind: str) -> str:
    """The error type for a provider's own error name (e.g. Anthropic's `overloaded_error` in a stream)."""
    kind = kind.lower()
    for needle, error_type in (
        ("rate_limit", RATE_LIMIT),
        ("quota", RATE_LIMIT),
        ("auth", AUTH_ERROR),
        ("permission", AUTH_ERROR),
        ("not_found", MODEL_ERROR),
        ("invalid", INVALID_REQUEST),
        ("timeout", TIMEOUT),
        ("overloaded", SERVER_ERROR),
        ("server", SERVER_ERROR),
        ("api_error", SERVER_ERROR),
    ):
        if needle in kind:
            return error_type
    return STREAM_ERROR
