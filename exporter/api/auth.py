"""API tokens and roles: an admin sees every request, a member only their own (user id), an app only the budgets.

Configured in `llmtally.yaml` under `api.tokens`; a token is given as its sha256 (hex, preferred: the file then holds
no secret) or as plain text. Without tokens the API is open but `serve` only listens on loopback.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..config import ConfigError

Role = Literal["admin", "member", "app"]
ROLES: tuple[str, ...] = ("admin", "member", "app")


class TokenConfigError(ConfigError):
    """An `api.tokens` entry that cannot be used; the message names it."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: a named token with a role (and, for a member, the user id they are)."""

    name: str
    role: Role
    user: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Token:
    sha256: str
    principal: Principal


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(entries: Sequence[Mapping[str, Any]]) -> list[Token]:
    """`api.tokens` entries -> tokens. Each: name, role (admin|member|app), user (members), token or token_sha256.

    An app token (what an instrumented app's budget enforcement uses) reads /api/v1/budgets and nothing else."""
    tokens = []
    for i, entry in enumerate(entries):
        where = f"api.tokens[{i}]"
        if not isinstance(entry, Mapping):
            raise TokenConfigError(f"{where} must be a mapping")
        unknown = set(entry) - {"name", "role", "user", "token", "token_sha256"}
        if unknown:
            raise TokenConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        role = entry.get("role")
        if role not in ROLES:
            raise TokenConfigError(f"{where}.role must be admin, member or app, not {role!r}")
        user = entry.get("user")
        if role == "member" and not (isinstance(user, str) and user):
            raise TokenConfigError(f"{where}: a member token needs user (the user id whose requests it may see)")
        secret, hashed = entry.get("token"), entry.get("token_sha256")
        if (secret is None) == (hashed is None):
            raise TokenConfigError(f"{where}: give exactly one of token and token_sha256")
        if secret is not None and (not isinstance(secret, str) or len(secret) < 16):
            raise TokenConfigError(f"{where}.token must be a string of at least 16 characters")
        if hashed is not None and not (isinstance(hashed, str) and len(hashed) == 64):
            raise TokenConfigError(f"{where}.token_sha256 must be 64 hex digits")
        name = str(entry.get("name") or f"token{i}")
        tokens.append(Token(digest(secret) if secret else str(hashed).lower(), Principal(name, role, user)))
    return tokens


def authenticate(authorization: str | None, tokens: Sequence[Token]) -> Principal | None:
    """The principal of an `Authorization: Bearer <token>` header, or None (missing, malformed or unknown)."""
    if not authorization:
        return None
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    presented = digest(credential.strip())
    found = None
    for token in tokens:  # compare with every token in constant time
        if hmac.compare_digest(presented, token.sha256):
            found = token.principal
    return found
