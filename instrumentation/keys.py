"""Provider API keys, named without being revealed: a short hash of the key a request sends."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

_KEY_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")
_KEY_IDS: dict[str, str] = {}


def key_id(secret: str) -> str:
    """A short, stable hash that names a provider key without revealing it."""
    found = _KEY_IDS.get(secret)
    if found is None:
        if len(_KEY_IDS) > 1024:
            _KEY_IDS.clear()
        found = _KEY_IDS[secret] = "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]
    return found


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key id of the provider key in request headers (lower-case names), if any. An AWS Signature V4
    `Authorization` header is named by its access key id, not by the signature, which changes every request."""
    for name in _KEY_HEADERS:
        value = headers.get(name)
        if value:
            if value.startswith("AWS4-HMAC-SHA256 "):
                return aws_key(value)
            return key_id(value.removeprefix("Bearer ").strip())
    return None


def aws_key(authorization: str) -> str | None:
    """The key id of the access key in a Signature V4 `Authorization` header."""
    credential = authorization.partition("Credential=")[2].partition("/")[0]
    return key_id(credential) if credential else None


def key_from_client(instance: Any, options: Any) -> str | None:
    """The `sha256:` id of the key an SDK client sends: a per-request header, else the client's own key."""
    headers = getattr(options, "headers", None)
    if isinstance(headers, Mapping):
        lowered = {str(k).lower(): v for k, v in headers.items() if isinstance(v, str)}
        found = key_from_headers(lowered)
        if found:
            return found
    for attr in ("api_key", "auth_token"):
        secret = getattr(instance, attr, None)
        if isinstance(secret, str) and secret:
            return key_id(secret)
    return None
