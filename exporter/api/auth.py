"""API tokens and roles: an admin sees every request, a member only their own (user id), an app only the budgets.

Configured in `llmtally.yaml` under `api.tokens`; a token is given as its sha256 (hex, preferred: the file then holds
no secret) or as plain text (`llmtally.exporter.tokens`). Without tokens the API is open but `serve` only listens on
loopback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..tokens import Token, TokenConfigError, find, parse

Role = Literal["admin", "member", "app"]
ROLES: tuple[str, ...] = ("admin", "member", "app")

__all__ = ["ROLES", "Principal", "Role", "Token", "TokenConfigError", "authenticate", "parse_tokens"]


@dataclass(frozen=True)
class Principal:
    """Who is asking: a named token with a role (and, for a member, the user id they are)."""

    name: str
    role: Role
    user: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _principal(entry: Mapping[str, Any], where: str, index: int) -> Principal:
    role = entry.get("role")
    if role not in ROLES:
        raise TokenConfigError(f"{where}.role must be admin, member or app, not {role!r}")
    user = entry.get("user")
    if role == "member" and not (isinstance(user, str) and user):
        raise TokenConfigError(f"{where}: a member token needs user (the user id whose requests it may see)")
    return Principal(str(entry.get("name") or f"token{index}"), role, user)


def parse_tokens(entries: Sequence[Mapping[str, Any]]) -> list[Token[Principal]]:
    """`api.tokens` entries -> tokens. Each: name, role (admin|member|app), user (members), token or token_sha256.

    An app token (what an instrumented app's budget enforcement uses) reads /api/v1/budgets and nothing else."""
    return parse(entries, "api.tokens", ("name", "role", "user"), _principal)


def authenticate(authorization: str | None, tokens: Sequence[Token[Principal]]) -> Principal | None:
    """The principal of an `Authorization: Bearer <token>` header, or None (missing, malformed or unknown)."""
    return find(authorization, tokens)
