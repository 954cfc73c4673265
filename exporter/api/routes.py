"""The /api/v1 endpoints (documented in the OpenAPI document at /api/v1/openapi.json)."""

# No `from __future__ import annotations`: FastAPI must see the route signatures' types as objects, and `Who` is
# local to create_router (a string annotation naming it cannot be resolved, so it became a required query parameter).
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..budgets.config import BudgetSettings
from ..budgets.status import report as budget_report
from ..budgets.status import states as budget_states
from ..price import Pricer
from ..store import BadCursor, Store, StoreError
from . import export, extra_filters, operations, reports, stream
from .auth import Principal, Token, authenticate
from .extra_query import query_dependency
from .feed import Feed
from .health import health as health_report
from .known import refuse_unknown_parameters
from .params import (
    FILTERS,
    GROUPS,
    LOG_STATUSES,
    SORTS,
    USAGE_STATUSES,
    Filters,
    QueryError,
    RangeName,
    TimeRange,
    check_buckets,
    group_by,
    instant,
    time_range,
)
from .settings import Analytics


class ErrorBody(BaseModel):
    """Every error answer: a message naming what was wrong."""

    error: str


_STATUS_HELP = {
    400: "A bad parameter, or one the endpoint does not take (the message names it and what is allowed)",
    401: "No valid API token (when api.tokens are configured)",
    403: "A member token asking for another user's requests, or an app token asking for anything but budgets",
    404: "Not found",
    503: "The audit store is unavailable (see Retry-After)",
}


def _documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": _STATUS_HELP[status]} for status in statuses}


_bearer = HTTPBearer(auto_error=False, description="An API token from api.tokens in llmtally.yaml")
_RANGE_HELP = "1h (the last hour), today (since 00:00 UTC), 24h, 7d, 30d, or custom with start/end"
_FILTER_HELP = {
    "user": "the user id",
    "api_key": "the API key alias",
    "model": "the requested model",
    "response_model": "the model that answered",
    "provider": "the provider (openai, anthropic, ...)",
    "operation": "the operation (chat, embeddings, ...)",
    "feature": "the feature tag",
    "department": "the department tag",
    "environment": "the deployment environment",
    "error_type": "the error type (rate_limit, timeout, ...)",
    "service_tier": "the service tier that served the request (priority, flex, default, ...)",
}


_SEVERAL = (
    '; several values: repeat the parameter, separate them with commas, or quote them ("a","b"); empty or .* (All):'
    " no filter"
)


@dataclass(frozen=True)
class Asked:
    """The time range and filters of one API call, already checked."""

    range_name: str | None
    start: str | None
    end: str | None
    filters: dict[str, list[str] | None]
    status: list[str] | None
    http_status: list[str] | None = None
    extra: Mapping[str, list[str]] = field(default_factory=dict)  # param.<name> and dimension filters
    dimensions: tuple[str, ...] = ()

    def resolve(self, default: str, statuses: tuple[str, ...]) -> tuple[TimeRange, Filters]:
        return time_range(self.range_name, self.start, self.end, default=default), self.checked_filters(statuses)

    def checked_filters(self, statuses: tuple[str, ...]) -> Filters:
        """The filters alone (for calls that take their period in another form)."""
        given = {**self.filters, "status": self.status, "http_status": self.http_status}
        filters = Filters.parse(given, statuses)
        return replace(filters, json=extra_filters.parse(self.extra, self.dimensions))


@dataclass(frozen=True)
class RouteKit:
    """What routes added by other parts share with the API's own: the router, the dependencies that give the caller
    and the checked query (`Annotated[Principal | None, Depends(kit.principal)]`), the member scoping of filters and
    the declared custom dimensions, the configured time zone."""

    router: APIRouter
    principal: Callable[..., Principal | None]
    asked: Callable[..., Asked]
    scoped: Callable[[Filters, Principal | None], Filters]
    dimensions: Callable[[], tuple[str, ...]]  # those declared now (they follow reloads)
    timezone: Callable[[], tzinfo]  # the one in force (it follows reloads)


def _asked(
    range_: Annotated[RangeName | None, Query(alias="range", description=_RANGE_HELP)] = None,
    start: Annotated[
        str | None, Query(description="ISO 8601 date or date-time (UTC unless an offset is given)")
    ] = None,
    end: Annotated[
        str | None, Query(description="ISO 8601 date (inclusive) or date-time (exclusive); default now")
    ] = None,
    user: Annotated[list[str] | None, Query(description=_FILTER_HELP["user"] + _SEVERAL)] = None,
    api_key: Annotated[list[str] | None, Query(description=_FILTER_HELP["api_key"] + _SEVERAL)] = None,
    model: Annotated[list[str] | None, Query(description=_FILTER_HELP["model"] + _SEVERAL)] = None,
    response_model: Annotated[list[str] | None, Query(description=_FILTER_HELP["response_model"] + _SEVERAL)] = None,
    provider: Annotated[list[str] | None, Query(description=_FILTER_HELP["provider"] + _SEVERAL)] = None,
    operation: Annotated[list[str] | None, Query(description=_FILTER_HELP["operation"] + _SEVERAL)] = None,
    feature: Annotated[list[str] | None, Query(description=_FILTER_HELP["feature"] + _SEVERAL)] = None,
    department: Annotated[list[str] | None, Query(description=_FILTER_HELP["department"] + _SEVERAL)] = None,
    environment: Annotated[list[str] | None, Query(description=_FILTER_HELP["environment"] + _SEVERAL)] = None,
    error_type: Annotated[list[str] | None, Query(description=_FILTER_HELP["error_type"] + _SEVERAL)] = None,
    service_tier: Annotated[list[str] | None, Query(description=_FILTER_HELP["service_tier"] + _SEVERAL)] = None,
    status: Annotated[
        list[str] | None,
        Query(
            description="success or error (request log and export: also 4xx, 5xx), or an HTTP status code such as"
            " 429 (the same as http_status)" + _SEVERAL
        ),
    ] = None,
    http_status: Annotated[
        list[str] | None, Query(description="the exact HTTP status code of the answer (429, 500, ...)" + _SEVERAL)
    ] = None,
) -> Asked:
    values = dict(
        zip(
            FILTERS,
            (
                user,
                api_key,
                model,
                response_model,
                provider,
                operation,
                feature,
                department,
                environment,
                error_type,
                service_tier,
            ),
            strict=True,
        )
    )
    return Asked(range_, start, end, values, status, http_status)


def _filters_only(dependency: Callable[..., Asked]) -> Callable[..., Asked]:
    """`dependency` without its time range parameters (range, start, end): for the live feed, which starts now."""
    signature = inspect.signature(dependency)
    kept = [p for name, p in signature.parameters.items() if name not in ("range_", "start", "end")]

    def filters(**given: Any) -> Asked:
        return dependency(range_=None, start=None, end=None, **given)

    filters.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]
    return filters


_asked_filters = _filters_only(_asked)


AskedDep = Annotated[Asked, Depends(_asked)]


def create_router(
    store: Store,
    tokens: Sequence[Token[Principal]],
    pricer: Pricer,
    budgets: BudgetSettings | Callable[[], BudgetSettings] | None = None,
    analytics: Analytics | Callable[[], Analytics] | None = None,
    dimensions: Sequence[str] | Callable[[], Sequence[str]] = (),
    more: Sequence[Callable[[RouteKit], None]] = (),
    feed: Feed | None = None,
) -> APIRouter:
    """The /api/v1 routes over `store` and their OpenAPI document; with `tokens`, every call needs one (members see
    only their own). `budgets`, `analytics`, `dimensions` (the declared custom dimensions: filters and group_by
    names): the settings, or a function giving the ones in force (they follow reloads). `more` adds routes of other
    parts: each is called with a `RouteKit` (the router and the dependencies its routes share). `feed`: the live
    feed."""
    budget_settings = budgets or BudgetSettings()
    fixed = analytics if isinstance(analytics, Analytics) else Analytics()
    current = analytics if callable(analytics) else (lambda: fixed)
    started = tuple(dimensions()) if callable(dimensions) else tuple(dimensions)

    def declared() -> tuple[str, ...]:
        return tuple(dimensions()) if callable(dimensions) else started

    extra_query = query_dependency(started)  # documented: those declared at start

    def with_extra(request: Request, asked: Asked, extra: dict[str, list[str]]) -> Asked:
        """`asked` with the request-parameter and dimension filters, for the dimensions declared now (a reload may
        have added some since the start: they are read from the query string by name)."""
        now = declared()
        gone = sorted(n for n in extra if not n.startswith(extra_filters.PARAM_PREFIX) and n not in now)
        if gone:
            raise QueryError(f"{', '.join(gone)}: no longer declared under dimensions: (a reload removed it)")
        added = {n: request.query_params.getlist(n) for n in now if n not in started and n in request.query_params}
        kept = {n: v for n, v in extra.items() if n.startswith(extra_filters.PARAM_PREFIX) or n in now}
        return replace(asked, extra={**kept, **added}, dimensions=now)

    def extended(base: Callable[..., Asked]) -> Callable[..., Asked]:
        """The dependency `base` (the query's range and filters) with the extra filters."""

        def dependency(
            request: Request,
            asked: Annotated[Asked, Depends(base)],
            extra: Annotated[dict[str, list[str]], Depends(extra_query)],
        ) -> Asked:
            return with_extra(request, asked, extra)

        return dependency

    asked_with_extra, filters_with_extra = extended(_asked), extended(_asked_filters)
    AskedDep = Annotated[Asked, Depends(asked_with_extra)]

    def any_principal(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal | None:
        if not tokens:
            return None
        header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
        who = authenticate(header, tokens)
        if who is None:
            raise HTTPException(
                401, "a valid API token is required (Authorization: Bearer ...)", headers={"WWW-Authenticate": "Bearer"}
            )
        return who

    def principal(who: Annotated[Principal | None, Depends(any_principal)]) -> Principal | None:
        if who is not None and who.role == "app":
            raise HTTPException(403, f"token {who.name!r} (role app) may only read /api/v1/budgets")
        return who

    Who = Annotated[Principal | None, Depends(principal)]
    AnyWho = Annotated[Principal | None, Depends(any_principal)]

    def scoped(filters: Filters, who: Principal | None) -> Filters:
        """A member's filters narrowed to their own requests; asking for someone else's is refused."""
        if who is None or who.is_admin:
            return filters
        asked = filters.equal.get("user", ())
        if any(user != who.user for user in asked):
            raise HTTPException(403, f"token {who.name!r} may only see the requests of user {who.user!r}")
        assert who.user is not None
        return filters.with_user(who.user)

    def known_parameters_only(request: Request, who: AnyWho) -> None:
        """After authentication (an unknown caller learns nothing of the parameters)."""
        refuse_unknown_parameters(request, also=declared())

    router = APIRouter(
        prefix="/api/v1",
        tags=["analytics"],
        responses=_documented(400, 401, 403, 503),
        dependencies=[Depends(known_parameters_only)],
    )

    @router.get("/usage", summary="Usage and cost, grouped and filtered")
    def usage(
        asked: AskedDep,
        who: Who,
        group_by_: Annotated[
            str | None,
            Query(alias="group_by", description=f"comma-separated, among: {', '.join((*GROUPS, *started))}"),
        ] = None,
    ) -> dict[str, Any]:
        span, filters = asked.resolve("7d", USAGE_STATUSES)
        groups = group_by(group_by_, declared())
        check_buckets(span, groups)
        return reports.usage(store, span, scoped(filters, who), groups, current().timezone)

    @router.get(
        "/requests", summary="The request log, newest first or sorted by cost, latency, tokens, a page at a time"
    )
    def requests(
        asked: AskedDep,
        who: Who,
        limit: Annotated[int, Query(ge=1, le=1000, description="requests per page")] = 50,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
        sort: Annotated[
            str | None,
            Query(description=f"the order, among {', '.join(SORTS)} (- for descending); default -time, newest first"),
        ] = None,
    ) -> dict[str, Any]:
        span, filters = asked.resolve("7d", LOG_STATUSES)
        return reports.request_log(store, span, scoped(filters, who), limit, cursor, sort)

    stream.add_route(
        router, feed or Feed(store), Annotated[Asked, Depends(filters_with_extra)], Who, scoped
    )  # before /requests/{request_id}

    @router.get(
        "/requests/{request_id}",
        summary="One request: every stored field, events and payloads",
        responses=_documented(404),
    )
    def request_detail(request_id: str, who: Who) -> dict[str, Any]:
        record = None if "\x00" in request_id else store.get(request_id)  # no stored id has one
        if record is None or (who is not None and not who.is_admin and record.user_id != who.user):
            raise HTTPException(404, f"no request {request_id!r}")
        return reports.request_detail(record)

    @router.get("/errors", summary="Errors: total, rate, by type, model and provider")
    def errors(asked: AskedDep, who: Who) -> dict[str, Any]:
        span, filters = asked.resolve("7d", USAGE_STATUSES)
        return reports.errors(store, span, scoped(filters, who))

    @router.get(
        "/insights", summary="Cost insights: by operation, trend, top drivers, 30-day projection, savings advice"
    )
    def insights(asked: AskedDep, who: Who) -> dict[str, Any]:
        span, filters = asked.resolve("30d", USAGE_STATUSES)
        return reports.insights(store, span, scoped(filters, who), pricer=pricer)

    @router.get(
        "/health", summary="Provider and model health: errors, success rate, latency, last used, last error, status"
    )
    def health(asked: AskedDep, who: Who) -> dict[str, Any]:
        span, filters = asked.resolve("24h", USAGE_STATUSES)
        return health_report(store, span, scoped(filters, who), current().health)

    @router.get(
        "/export",
        summary="Every matching request as CSV, JSON or JSONL, streamed",
        response_class=StreamingResponse,
        responses={200: {"content": {m: {} for m in export.MEDIA_TYPES.values()}}},
    )
    def export_records(
        asked: AskedDep,
        who: Who,
        format_: Annotated[export.Format, Query(alias="format")] = "csv",
        payloads: Annotated[bool, Query(description="include captured prompts and completions")] = False,
    ) -> StreamingResponse:
        span, filters = asked.resolve("30d", LOG_STATUSES)
        records = scoped(filters, who).records(store, span)
        store.snapshot()  # fail here (503) rather than mid-stream when the store is down
        name = f"llmtally-requests.{format_}"
        return StreamingResponse(
            export.stream(records, format_, payloads, declared()),
            media_type=export.MEDIA_TYPES[format_],
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @router.get(
        "/price",
        summary="A model's price (overrides first, then the genai-prices catalog)",
        responses=_documented(404),
    )
    def price(
        who: Who,
        model: Annotated[str, Query(min_length=1, description="model name")],
        provider: Annotated[str | None, Query(description="provider id (helps when names clash)")] = None,
        at: Annotated[str | None, Query(description="ISO 8601 date-time the price applies at; default now")] = None,
    ) -> dict[str, Any]:
        when = None
        if at is not None:
            when = datetime.fromtimestamp(instant(at, "at") / 1e9, UTC)
        info = pricer.lookup(provider, model, when)
        if info is None:
            raise HTTPException(404, f"no price known for model {model!r}; add it under pricing.overrides")
        return info.as_json()

    @router.get("/openapi.json", include_in_schema=False, dependencies=[Depends(principal)])
    def openapi(request: Request) -> JSONResponse:
        """The OpenAPI document (the app's, built once by FastAPI), behind the same tokens as the calls it lists."""
        return JSONResponse(request.app.openapi())

    @router.get("/budgets", summary="Budgets: limit, spent, utilisation, projection, status; provider credits")
    def budgets_view(who: AnyWho) -> dict[str, Any]:
        now = datetime.now(UTC)
        settings = budget_settings() if callable(budget_settings) else budget_settings
        states, credits = budget_states(store, settings, now)
        if who is not None and who.role == "member":
            states = [s for s in states if s.budget.scope.get("user") == who.user]
            credits = []
        return budget_report(states, credits, now)

    operations.add_routes(router, store, principal)
    kit = RouteKit(router, principal, asked_with_extra, scoped, declared, lambda: current().timezone)
    for add in more:
        add(kit)
    return router


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for e in error.errors():
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "path"))
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI, router: APIRouter, retry_after: float) -> None:
    """Adds the routes and answers bad parameters with 400 and a store that fails with 503, in JSON."""
    app.include_router(router)

    def handle(kind: type[Exception], respond: Callable[[Exception], JSONResponse]) -> None:
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            return respond(exc)

        app.add_exception_handler(kind, handler)

    handle(
        StarletteHTTPException,
        lambda e: _error(e.status_code, str(e.detail), e.headers),  # type: ignore[attr-defined]
    )
    handle(RequestValidationError, lambda e: _error(400, _validation_message(e)))  # type: ignore[arg-type]
    handle(QueryError, lambda e: _error(400, str(e)))
    handle(BadCursor, lambda e: _error(400, str(e)))
    handle(
        StoreError,
        lambda e: _error(503, f"the audit store is unavailable: {e}", {"Retry-After": str(int(retry_after))}),
    )
