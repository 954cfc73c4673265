"""`GET /api/v1/report`: a statement as JSON, CSV, HTML or PDF, with the access rules of the other reports (added to
the API's router by `serve`)."""

# No `from __future__ import annotations`: FastAPI reads the route's annotations as objects (see api/routes.py).
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Query
from fastapi.responses import Response

from ..api.auth import Principal
from ..api.params import USAGE_STATUSES, group_by, time_range
from ..api.routes import Asked, RouteKit
from ..price import Pricer
from ..store import Store
from . import periods, render, statement


def add_route(store: Store, pricer: Pricer) -> Callable[[RouteKit], None]:
    """What `create_router` calls with its router and shared dependencies."""

    def add(kit: RouteKit) -> None:
        @kit.router.get(
            "/report",
            summary="A statement: per group and in total over a period, costs, markup, fee and price sources",
            response_class=Response,
            responses={200: {"content": {m: {} for m in render.MEDIA_TYPES.values()}}},
        )
        def report(
            asked: Annotated[Asked, Depends(kit.asked)],
            who: Annotated[Principal | None, Depends(kit.principal)],
            month: Annotated[str | None, Query(description="a calendar month, e.g. 2026-11")] = None,
            week: Annotated[str | None, Query(description="an ISO week, e.g. 2026-W45")] = None,
            day: Annotated[str | None, Query(description="one day, e.g. 2026-11-03")] = None,
            group_by_: Annotated[
                str | None, Query(alias="group_by", description="comma-separated dimensions (those of /usage)")
            ] = None,
            format_: Annotated[render.Format, Query(alias="format")] = "json",
            title: Annotated[str, Query(max_length=200, description="the statement's title")] = "Statement",
        ) -> Response:
            if asked.range_name is not None and (month or week or day or asked.start or asked.end):
                raise HTTPException(400, "give one period: range, month, week, day or start/end")
            if asked.range_name is not None:
                span = time_range(asked.range_name, default="30d")
            else:
                span = periods.period(month, week, day, asked.start, asked.end, kit.timezone())
            groups = group_by(group_by_, kit.dimensions())
            statement.check_groups(groups)
            filters = kit.scoped(asked.checked_filters(USAGE_STATUSES), who)
            body = statement.build(store, span, filters, groups, pricer.fee_nusd, title=title)
            name = f"llmtally-statement-{span.name}.{format_}"
            return Response(
                render.render(body, format_),
                media_type=render.MEDIA_TYPES[format_],
                headers={"Content-Disposition": f'inline; filename="{name}"'},
            )

    return add
