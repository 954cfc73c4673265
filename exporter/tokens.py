"""Bearer tokens as `llmtally.yaml` lists them, and finding the one a request presents: what API tokens (`api.tokens`)
and ingest tokens (`receiver.ingest_tokens`) share.

Each entry gives its token as `token_sha256` (64 hex digits, preferred: the file then holds no secret) or as plain
`token` (at least 16 characters). A presented token is hashed and compared with every configured hash in constant
time (`hmac.compare_digest`), so neither the answer nor its timing tells how close a guess was.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .config import ConfigError

G = TypeVar("G")
MIN_LENGTH = 16


class TokenConfigError(ConfigError):
    """A token entry that cannot be used; the message names it."""


@dataclass(frozen=True)
class Token(Generic[G]):
    """A configured token (its sha256) and what presenting it grants."""

    sha256: str
    grant: G


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse(
    entries: Any, key: str, fields: Collection[str], grant: Callable[[Mapping[str, Any], str, int], G]
) -> list[Token[G]]:
    """The tokens of `key` (a list of mappings with token or token_sha256 and any of `fields`); `grant(entry, where,
    index)` builds what each grants. Raises TokenConfigError naming the entry at fault."""
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise TokenConfigError(f"{key} must be a list")
    tokens: list[Token[G]] = []
    seen: dict[str, str] = {}
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        if not isinstance(entry, Mapping):
            raise TokenConfigError(f"{where} must be a mapping")
        unknown = set(entry) - set(fields) - {"token", "token_sha256"}
        if unknown:
            raise TokenConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        sha256 = _sha256(entry, where)
        if sha256 in seen:
            raise TokenConfigError(f"{where}: the same token as {seen[sha256]}")
        seen[sha256] = where
        tokens.append(Token(sha256, grant(entry, where, i)))
    return tokens


def _sha256(entry: Mapping[str, Any], where: str) -> str:
    secret, hashed = entry.get("token"), entry.get("token_sha256")
    if (secret is None) == (hashed is None):
        raise TokenConfigError(f"{where}: give exactly one of token and token_sha256")
    if secret is not None:
        if not isinstance(secret, str) or len(secret) < MIN_LENGTH:
            raise TokenConfigError(f"{where}.token must be a string of at least {MIN_LENGTH} characters")
        return digest(secret)
    if not (isinstance(hashed, str) and len(hashed) == 64 and set(hashed) <= set(string.hexdigits)):
        raise TokenConfigError(f"{where}.token_sha256 must be 64 hex digits")
    return hashed.lower()


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; None when missing or of another scheme."""
    scheme, _, credential = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip() or None


def find(authorization: str | None, tokens: Sequence[Token[G]]) -> G | None:
    """What the token of an `Authorization: Bearer <token>` value grants, or None (missing, malformed, unknown)."""
    credential = bearer(authorization)
    if credential is None:
        return None
    presented = digest(credential)
    found = None
    for token in tokens:  # every token, in constant time: how far the search went tells nothing
        if hmac.compare_digest(presented, token.sha256):
            found = token.grant
    return found
