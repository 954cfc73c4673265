"""Unknown query parameters refused: a misspelt filter must never be silently ignored (every row returned)."""

from __future__ import annotations

from collections.abc import Collection

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from .params import QueryError

_KNOWN: dict[int, frozenset[str]] = {}


def known_parameters(route: APIRoute) -> frozenset[str]:
    """The query parameters a route declares (its own and its dependencies', by alias)."""
    found = _KNOWN.get(id(route))
    if found is None:
        found = _KNOWN[id(route)] = frozenset(_aliases(route.dependant))
    return found


def _aliases(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _aliases(sub)
    return names


def refuse_unknown_parameters(request: Request, also: Collection[str] = ()) -> None:
    """Called by a dependency of every /api/v1 route: a query parameter the route does not declare (nor `also`
    names: parameters read from the query string by name) is a 400 naming the parameters it takes."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = known_parameters(route) | frozenset(also)
    unknown = sorted({name for name in request.query_params if name not in known})
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise QueryError(f"unknown query parameter(s) {', '.join(unknown)}; {route.path} takes: {listed}")
