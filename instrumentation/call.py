"""One LLM request from start to end, whichever layers saw it, and the telemetry it becomes.

A call has one or more attempts (the SDK's retries). It ends when both the layer that opened it has let go (the
SDK method returned or raised, or the HTTP send returned) and the body of its last attempt has been read, closed or
dropped. Then it emits exactly one span, one audit event and its metrics. It knows no provider: what a request and
an answer say is read by its endpoint (`apis`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from . import attribution, content, errors, ratelimit, semconv
from .apis.base import Endpoint, Request
from .keys import key_from_headers
from .reader import ResponseReader
from .safety import quiet
from .settings import Settings
from .telemetry import Telemetry
from .usage import Usage

_UNRESOLVED_TIERS = ("auto", "")  # request settings that name no tier; Anthropic's standard_only is "standard"
_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amzn-requestid")


def service_tier(answered: str | None, request: Request) -> str | None:
    """The tier a call was served (and is priced) at: the one the answer reports, else the one the request asked for
    (unless it left the choice to the provider)."""
    if answered:
        return answered
    asked = request.attributes.get(semconv.REQUEST_SERVICE_TIER)
    if not isinstance(asked, str) or asked in _UNRESOLVED_TIERS:
        return None
    return "standard" if asked == "standard_only" else asked


class LLMCall:
    """The state of one LLM request while it runs."""

    __slots__ = (
        "_context",
        "_token",
        "attempts",
        "attribution",
        "body_open",
        "ended",
        "endpoint",
        "error",
        "error_in_body",
        "events",
        "host",
        "key",
        "port",
        "provider",
        "ratelimits",
        "reader",
        "reads_http",
        "request",
        "request_id",
        "scope_open",
        "settings",
        "span",
        "start_ns",
        "status",
        "stream_outcome",
        "telemetry",
    )

    def __init__(
        self,
        settings: Settings,
        telemetry: Telemetry,
        endpoint: Endpoint,
        provider: str,
        request: Request,
        host: str,
        port: int | None,
        *,
        reads_http: bool = True,
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.endpoint = endpoint
        self.provider = provider
        self.request = request
        self.host = host
        self.port = port
        self.reads_http = reads_http  # False: the SDK hook reads the answers itself; the HTTP hook stays out
        self.start_ns = time.time_ns()
        self.attribution = attribution.current()
        operation = endpoint.operation
        name = f"{operation} {request.model}" if request.model else operation
        self.span = telemetry.tracer.start_span(name, kind=SpanKind.CLIENT, start_time=self.start_ns)
        self._context = trace.set_span_in_context(self.span)  # also the audit event's (its trace and span ids)
        self._token: object | None = otel_context.attach(self._context)
        self.attempts = 0
        self.events: list[tuple[int, dict[str, AttributeValue]]] = []
        self.reader: ResponseReader | None = None
        self.status: int | None = None
        self.error: BaseException | None = None
        self.error_in_body = False
        self.ratelimits: ratelimit.RateLimits | None = None
        self.request_id: str | None = None
        self.key: str | None = None
        self.stream_outcome: str | None = None
        self.scope_open = True
        self.body_open = False
        self.ended = False

    # Attempts ----------------------------------------------------------------------------------------------

    def begin_attempt(self, headers: Mapping[str, str], *, inject_usage: bool = False) -> ResponseReader:
        """A new attempt is about to be sent; an earlier one was retried."""
        if self.attempts:
            event: dict[str, AttributeValue] = {"attempt": self.attempts}
            if self.status is not None:
                event[semconv.HTTP_STATUS_CODE] = self.status
                event[semconv.ERROR_TYPE] = errors.from_status(self.status)
            elif self.error is not None:
                event[semconv.ERROR_TYPE] = errors.from_exception(self.error)
            self.events.append((time.time_ns(), event))
        elif self.key is None and semconv.API_KEY not in self.attribution:
            self.key = key_from_headers(headers)
        self.attempts += 1
        self.status = None
        self.error = None
        self.error_in_body = False
        self.body_open = False
        reader = ResponseReader(self.endpoint, capture=self.settings.capture_content, drop_usage_chunk=inject_usage)
        self.reader = reader
        return reader

    def attempt_answered(self, status: int, headers: Mapping[str, str]) -> None:
        """The attempt was answered with `status` and `headers` (lower-case names)."""
        self.status = status
        limits = ratelimit.read(headers)
        if limits is not None:
            self.ratelimits = limits
        for name in _REQUEST_ID_HEADERS:
            found = headers.get(name)
            if found:
                self.request_id = found
                break
        if self.reader is not None:
            self.endpoint.read_headers(self.reader.answer, status, headers)

    def attempt_failed(self, error: BaseException) -> None:
        self.error = error

    def body_started(self) -> None:
        self.body_open = True

    def stream_ended(self, reader: ResponseReader, how: str, error: BaseException | None = None) -> None:
        """The streamed body of an attempt was read to its end (`read`), closed by the app (`closed`), dropped
        unclosed (`dropped`) or failed (`failed`). A stream closed after its last event counts as completed."""
        if how == "read" or (how == "closed" and reader.answer.saw_end):
            outcome = "completed"
        elif how == "failed":
            outcome = "failed"
        else:
            outcome = "abandoned" if how == "dropped" else "closed_early"
        self.body_ended(reader, outcome, error)

    def body_ended(self, reader: ResponseReader, outcome: str, error: BaseException | None = None) -> None:
        """The body of an attempt was read to its end, closed, dropped or failed (`outcome`: the stream outcome)."""
        if reader is not self.reader or not self.body_open:
            return
        self.body_open = False
        if self.request.stream and (self.status is None or self.status < 400):
            self.stream_outcome = outcome  # an error answer to a streamed request is no stream
        if error is not None:
            self.error = error
            self.error_in_body = True
        if not self.scope_open:
            self.end()

    def leave_scope(self, error: BaseException | None = None) -> None:
        """The layer that opened the call is done (the SDK method returned or raised)."""
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            self._token = None
        self.scope_open = False
        if error is not None and self.error is None and (self.status is None or self.status < 400):
            self.error = error
        if not self.body_open:
            self.end()

    # The end -----------------------------------------------------------------------------------------------

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        with quiet():
            self._emit()

    def _emit(self) -> None:
        end_ns = time.time_ns()
        attrs, metric_attrs = self._attributes(end_ns)
        span = self.span
        if span.is_recording():
            span.set_attributes(attrs)
            for ts, event in self.events:
                span.add_event(semconv.RETRY_EVENT_NAME, event, ts)
            if semconv.ERROR_TYPE in attrs:
                span.set_status(Status(StatusCode.ERROR, str(attrs.get(semconv.ERROR_MESSAGE, ""))))
        span.end(end_ns)
        self.telemetry.logger.emit(
            timestamp=end_ns,
            context=self._context,
            severity_number=SeverityNumber.ERROR if semconv.ERROR_TYPE in attrs else SeverityNumber.INFO,
            event_name=semconv.AUDIT_EVENT_NAME,
            attributes=attrs,
        )
        self._record_metrics(attrs, metric_attrs, (end_ns - self.start_ns) / 1e9)

    def _attributes(self, end_ns: int) -> tuple[dict[str, AttributeValue], dict[str, AttributeValue]]:
        answer = self.reader.answer if self.reader is not None else None
        request = self.request
        operation = self.endpoint.operation
        attrs: dict[str, AttributeValue] = {
            semconv.OPERATION: operation,
            semconv.PROVIDER: self.provider,
            semconv.REQUEST_MODEL: request.model,
            semconv.SERVER_ADDRESS: self.host,
            semconv.DURATION: (end_ns - self.start_ns) / 1e9,
        }
        if self.port is not None:
            attrs[semconv.SERVER_PORT] = self.port
        attrs.update(request.attributes)
        metric_attrs: dict[str, AttributeValue] = {
            semconv.PROVIDER: self.provider,
            semconv.OPERATION: operation,
            semconv.REQUEST_MODEL: request.model,
        }
        if answer is not None:
            if answer.response_id:
                attrs[semconv.RESPONSE_ID] = answer.response_id
            if answer.response_model:
                attrs[semconv.RESPONSE_MODEL] = metric_attrs[semconv.RESPONSE_MODEL] = answer.response_model
            if answer.finish_reasons:
                attrs[semconv.RESPONSE_FINISH_REASONS] = answer.finish_reasons
            if request.stream and answer.first_chunk_ns is not None:
                attrs[semconv.RESPONSE_TIME_TO_FIRST_CHUNK] = (answer.first_chunk_ns - self.start_ns) / 1e9
            if answer.service_tier and self.endpoint.reports_openai_tier:
                attrs[semconv.RESPONSE_SERVICE_TIER] = answer.service_tier
        tier = service_tier(answer.service_tier if answer is not None else None, request)
        if tier:
            attrs[semconv.SERVICE_TIER] = tier
        speed = (answer.speed if answer is not None else None) or request.attributes.get(semconv.REQUEST_SPEED)
        if speed:
            attrs[semconv.SPEED] = speed
        usage = self._usage()
        if usage is not None:
            attrs[semconv.USAGE_INPUT_TOKENS] = usage.input
            attrs[semconv.USAGE_OUTPUT_TOKENS] = usage.output
            attrs[semconv.TOTAL_TOKENS] = usage.total
            attrs[semconv.USAGE_CACHE_READ_TOKENS] = usage.cache_read
            attrs[semconv.USAGE_CACHE_WRITE_TOKENS] = usage.cache_write
            if usage.cache_write_1h:
                attrs[semconv.USAGE_CACHE_WRITE_1H_TOKENS] = usage.cache_write_1h
            if usage.input_audio or usage.output_audio:
                attrs[semconv.USAGE_INPUT_AUDIO_TOKENS] = usage.input_audio
                attrs[semconv.USAGE_OUTPUT_AUDIO_TOKENS] = usage.output_audio
            if usage.web_searches:
                attrs[semconv.USAGE_WEB_SEARCHES] = usage.web_searches
            for unit, amount in usage.extra.items():
                attrs[semconv.USAGE_UNIT_PREFIX + unit] = amount
            attrs[semconv.USAGE_REASONING_TOKENS] = usage.reasoning
            # A streamed answer is complete once read to its end, or read whole (the SDK read the body itself).
            whole = self.stream_outcome is None and answer is not None and answer.saw_end
            complete = not request.stream or self.stream_outcome == "completed" or whole
            attrs[semconv.USAGE_SOURCE] = "provider" if complete else "partial"
        else:
            attrs[semconv.USAGE_SOURCE] = "none"
        if self.status is not None:
            attrs[semconv.HTTP_STATUS_CODE] = self.status
        if self.attempts > 1:
            attrs[semconv.HTTP_RESEND_COUNT] = self.attempts - 1
            attrs[semconv.EVENTS] = json.dumps(
                [{"name": "retry", "time_unix_nano": ts, **event} for ts, event in self.events]
            )
        if request.stream and self.stream_outcome:
            attrs[semconv.STREAM_OUTCOME] = self.stream_outcome
        self._error_attributes(attrs)
        if semconv.ERROR_TYPE in attrs:
            metric_attrs[semconv.ERROR_TYPE] = attrs[semconv.ERROR_TYPE]
        if self.request_id:
            attrs[semconv.REQUEST_ID] = self.request_id
        if self.ratelimits:
            attrs.update(self.ratelimits.span_attributes())
        who = self.attribution
        if request.user and semconv.USER_ID not in who:
            attrs[semconv.USER_ID] = request.user
        if self.key:
            attrs[semconv.API_KEY] = self.key
        if self.settings.environment:
            attrs[semconv.ENVIRONMENT] = self.settings.environment
        attrs.update(who)
        for key in semconv.METRIC_ONLY_KEYS:
            if key in attrs:
                metric_attrs[key] = attrs[key]
        self._content_attributes(attrs)
        return attrs, metric_attrs

    def _usage(self) -> Usage | None:
        """The answer's usage; for a successful answer that reports none, the counts its request fixes
        (`Request.usage`: a speech input's characters, say)."""
        answer = self.reader.answer if self.reader is not None else None
        if answer is not None and answer.usage is not None:
            return answer.usage
        if self.status is not None and self.status < 400 and self.error is None:
            return self.request.usage
        return None

    def _error_attributes(self, attrs: dict[str, AttributeValue]) -> None:
        answer = self.reader.answer if self.reader is not None else None
        message: str | None = answer.error_message if answer is not None else None
        if self.status is not None and self.status >= 400:
            named = self.endpoint.error_type(answer.error_type if answer is not None else None)
            attrs[semconv.ERROR_TYPE] = named or errors.from_status(self.status)
        elif self.error is not None:
            attrs[semconv.ERROR_TYPE] = errors.from_exception(self.error, in_body=self.error_in_body)
            message = message or f"{type(self.error).__name__}: {self.error}"[:500]
        elif answer is not None and answer.error_type is not None:
            named = self.endpoint.error_type(answer.error_type)
            attrs[semconv.ERROR_TYPE] = named or errors.from_provider(answer.error_type)
        if semconv.ERROR_TYPE in attrs and message:
            attrs[semconv.ERROR_MESSAGE] = message

    def _content_attributes(self, attrs: dict[str, AttributeValue]) -> None:
        settings = self.settings
        if not settings.capture_content:
            return
        patterns, limit = settings.redact_patterns, settings.capture_max_bytes
        if self.request.body:
            attrs[semconv.INPUT_MESSAGES] = content.input_messages(self.request.body, patterns, limit)
        answer = self.reader.answer if self.reader is not None else None
        if answer is not None and answer.output:
            attrs[semconv.OUTPUT_MESSAGES] = content.output_messages(
                answer.output, answer.finish_reasons, patterns, limit
            )

    def _record_metrics(
        self, attrs: Mapping[str, Any], metric_attrs: dict[str, AttributeValue], seconds: float
    ) -> None:
        tel = self.telemetry
        usage = self._usage()
        tel.totals.count(metric_attrs, semconv.ERROR_TYPE in metric_attrs, usage)
        ttft = attrs.get(semconv.RESPONSE_TIME_TO_FIRST_CHUNK)
        tel.histograms(seconds, ttft, usage, metric_attrs, self.host, self.port, otel_context.get_current())
        if self.ratelimits:
            tel.totals.rate_limits(self.provider, self.request.model, self.ratelimits)


current_call: ContextVar[LLMCall | None] = ContextVar("llmtally_current_call", default=None)
"""The call an SDK hook has opened in this context, so that the HTTP hook joins it instead of opening another."""


def run(call: LLMCall, wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Runs the SDK method that opened `call` as the current call; the call's scope ends with it."""
    token = current_call.set(call)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as error:
        current_call.reset(token)
        call.leave_scope(error)
        raise
    current_call.reset(token)
    call.leave_scope()
    return result


async def run_async(call: LLMCall, wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """`run` for an async SDK method."""
    token = current_call.set(call)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as error:
        current_call.reset(token)
        call.leave_scope(error)
        raise
    current_call.reset(token)
    call.leave_scope()
    return result
