"""Admin endpoints over the store's operations: forgetting a user, reading the operations log."""

# No `from __future__ import annotations`: FastAPI reads the route signatures' types as objects.
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from ..maintenance.logged import forget_user
from ..store import Store
from ..store.oplog import KINDS
from .auth import Principal


def actor(who: Principal | None, request: Request) -> str:
    """Who an API call is, for the operations log: its token's name, else `api@<client address>` (no tokens:
    loopback only)."""
    if who is not None:
        return who.name
    return f"api@{request.client.host if request.client else 'unknown'}"


def add_routes(router: APIRouter, store: Store, who: Any) -> None:
    """Adds /forget and /operations to `router`; `who` is the dependency that names the caller (or None)."""

    def admin(caller: Annotated[Principal | None, Depends(who)]) -> Principal | None:
        if caller is not None and not caller.is_admin:
            raise HTTPException(403, f"token {caller.name!r} (role {caller.role}) may not do this: admins only")
        return caller

    Admin = Annotated[Principal | None, Depends(admin)]

    @router.post(
        "/forget",
        summary="Erase one user from their records (id, payloads, source IP, errors); totals stay, under no user",
    )
    def forget(
        request: Request,
        caller: Admin,
        user: Annotated[str, Query(min_length=1, description="the user id to forget")],
        dry_run: Annotated[bool, Query(description="only count what would go")] = False,
    ) -> dict[str, Any]:
        if "\x00" in user:
            raise HTTPException(400, "user must not contain NUL characters")
        forgotten = forget_user(store, user, actor(caller, request), dry_run=dry_run)
        return {"user": user, "dry_run": dry_run, **forgotten.counts()}

    @router.get("/operations", summary="The operations log: reprice, cleanup, forget and reload, newest first")
    def operations(
        caller: Admin,
        limit: Annotated[int, Query(ge=1, le=1000, description="entries per page")] = 100,
        before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="entries with ids below this")] = None,
        kind: Annotated[str | None, Query(description=f"one of {', '.join(KINDS)}")] = None,
    ) -> dict[str, Any]:
        if kind is not None and kind not in KINDS:
            raise HTTPException(400, f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        entries = store.operations(limit, before, kind)
        more = len(entries) == limit and entries[-1].id > 1
        return {"operations": [e.as_json() for e in entries], "next_before": entries[-1].id if more else None}
