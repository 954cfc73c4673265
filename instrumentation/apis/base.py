"""What every provider API module fills in: an `Endpoint` per request shape, the `Request` it reads and the
`Answer` it reads into.

An endpoint knows everything particular to one provider API request: how its paths are recognised, where the
model, the stream flag and the parameters are in a request, and where the id, model, finish reasons, usage and
errors are in an answer, whole or streamed. The call lifecycle (`..call`) and the body framing (`..reader`)
know none of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.util.types import AttributeValue

from .. import semconv
from ..usage import Usage
from ..wire import Event

MAX_ERROR_MESSAGE = 500
_JSON_STARTS = (b"{", b" ", b"\n", b"\r", b"\t", "{", " ", "\n", "\r", "\t")
_INPUT_FIELDS = ("messages", "input", "prompt", "system", "instructions", "contents", "systemInstruction", "text")

# Request field -> span attribute, for the scalar parameters most APIs name alike (OpenAI's names; an endpoint
# maps its own names onto these).
COMMON_PARAMS: tuple[tuple[str, str], ...] = (
    ("temperature", semconv.REQUEST_TEMPERATURE),
    ("top_p", semconv.REQUEST_TOP_P),
    ("top_k", semconv.REQUEST_TOP_K),
    ("frequency_penalty", semconv.REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", semconv.REQUEST_PRESENCE_PENALTY),
    ("seed", semconv.REQUEST_SEED),
    ("n", semconv.REQUEST_CHOICE_COUNT),
    ("service_tier", semconv.REQUEST_SERVICE_TIER),
    ("max_tokens", semconv.REQUEST_MAX_TOKENS),
    ("max_completion_tokens", semconv.REQUEST_MAX_TOKENS),
    ("max_output_tokens", semconv.REQUEST_MAX_TOKENS),
)


@dataclass(slots=True)
class Request:
    """The parts of a request that telemetry uses."""

    model: str = ""
    stream: bool = False
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    user: str | None = None
    stream_options: bool = False  # the body sets `stream_options` itself
    body: Mapping[str, Any] | None = None  # kept only for content capture
    usage: Usage | None = None  # what the request alone fixes (a speech input's characters), for answers without usage


class Answer:
    """What one attempt's answer says, as far as it has been read."""

    __slots__ = (
        "error_message",
        "error_type",
        "finish_reasons",
        "first_chunk_ns",
        "output",
        "partial",
        "response_id",
        "response_model",
        "saw_end",
        "service_tier",
        "speed",
        "usage",
    )

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.finish_reasons: list[str] = []
        self.usage: Usage | None = None
        self.service_tier: str | None = None  # the tier that served the answer, as the provider reports it
        self.speed: str | None = None  # the inference speed that served it, as the provider reports it (Anthropic)
        self.error_type: str | None = None  # the provider's own error name, mapped by `errors.from_provider`
        self.error_message: str | None = None
        self.output: list[str] = []  # answer text, kept only when content is captured
        self.first_chunk_ns: int | None = None
        self.saw_end = False  # the answer said it was complete (a stream's last event, a whole body)
        self.partial: Any = None  # an endpoint's own state between the events of one stream

    def fail(self, kind: Any, message: Any) -> None:
        """Records a provider error reported inside an answer (a stream's error event, an error field)."""
        self.error_type = str(kind or "stream_error")
        self.error_message = str(message if message is not None else "")[:MAX_ERROR_MESSAGE]


class Endpoint:
    """One request shape of a provider API. Subclasses set the class attributes and override what differs."""

    api: str = ""  # the API's name, e.g. "openai.chat"; what an SDK hook or a test names it by
    operation: str = "chat"  # gen_ai.operation.name
    provider: str | None = None  # the provider that alone speaks this API, for hosts the host map does not know
    stream_framing: str = "body"  # how a streamed answer is framed when its content type does not say: body | ndjson
    usage_option: bool = False  # streamed usage can be asked for with `stream_options.include_usage`
    reports_openai_tier: bool = False  # the answer's `service_tier` is OpenAI's (kept as openai.response.*)
    # Byte strings of which a block of streamed events must contain one to be worth parsing; empty: parse all.
    markers: tuple[bytes, ...] = ()

    # Requests ---------------------------------------------------------------------------------------------

    def matches(self, path: str) -> bool:
        """Whether a request path (no query, no trailing slash) addresses this endpoint."""
        raise NotImplementedError

    def read_request(self, body: Mapping[str, Any], path: str, *, keep_body: bool) -> Request | None:
        """What the request asks for; None when it is no LLM call (no model named)."""
        model = self.model_of(body, path)
        if not model:
            return None
        request = Request(model=model, stream=self.streams(body, path))
        self.read_params(body, request)
        read_options(body, request.attributes)
        request.stream_options = "stream_options" in body
        request.user = end_user(body)
        if keep_body:
            request.body = input_fields(body)
        request.attributes[semconv.REQUEST_STREAM] = request.stream
        return request

    def model_of(self, body: Mapping[str, Any], path: str) -> str:
        """The model a request names ("" for none)."""
        model = body.get("model")
        return model if isinstance(model, str) else ""

    def streams(self, body: Mapping[str, Any], path: str) -> bool:
        """Whether the request asks for a streamed answer."""
        return bool(body.get("stream"))

    def read_params(self, body: Mapping[str, Any], request: Request) -> None:
        """The request parameters, as span attributes."""
        read_params(body, request.attributes)

    # Answers ----------------------------------------------------------------------------------------------

    def read_body(self, answer: Answer, body: bytes, *, capture: bool) -> None:
        """A complete successful body."""
        data = loads(body)
        if data is not None:
            answer.saw_end = True
            self.read_whole(answer, data, capture=capture)

    def read_whole(self, answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
        """A whole JSON answer."""

    # Named streamed events: the names worth parsing (None: every event), and those that carry only text, parsed
    # when content is captured. An unnamed event is always parsed.
    events: frozenset[bytes] | None = None
    text_events: frozenset[bytes] = frozenset()

    def read_event(self, answer: Answer, event: Event, *, capture: bool) -> bool:
        """One streamed event (SSE event, NDJSON line, event-stream message); False hides it from the app."""
        data = event.data
        name = event.name
        wanted = self.events
        if wanted is not None and name and name not in wanted and not (capture and name in self.text_events):
            return True
        if data:
            obj = loads(data)
            if obj is not None:
                self.on_event(answer, name.decode("utf-8", "replace"), obj, capture=capture)
        return True

    def on_event(self, answer: Answer, name: str, data: Mapping[str, Any], *, capture: bool) -> None:
        """One streamed event, already parsed (an SDK hook that reads the answer itself calls this)."""

    def read_headers(self, answer: Answer, status: int, headers: Mapping[str, str]) -> None:
        """An attempt's answer headers (lower-case names), before its body: for APIs that say part of the answer
        there (Bedrock's error code and token counts)."""

    def error_type(self, provider_error: str | None) -> str | None:
        """The bounded `error.type` of a failed answer from the provider's own error name (an AWS error code,
        say), when it says more than the HTTP status; None to go by the status."""
        return None

    def read_error(self, answer: Answer, body: bytes) -> None:
        """An error answer's body: its message and the provider's error name where the body has them."""
        data = loads(body)
        message: Any = None
        kind: Any = None
        if isinstance(data, Mapping):
            err = data.get("error")
            if isinstance(err, Mapping):
                message = err.get("message")
                kind = err.get("type") or err.get("status") or err.get("code")
            elif isinstance(err, str):
                message = err
            elif isinstance(data.get("message"), str):
                message = data["message"]
            else:
                message = data.get("Message")
        elif body:
            message = body[:MAX_ERROR_MESSAGE].decode("utf-8", "replace")
        if isinstance(message, str):
            answer.error_message = message[:MAX_ERROR_MESSAGE]
        if isinstance(kind, str):
            answer.error_type = kind

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.api}>"


class PathEndpoint(Endpoint):
    """An endpoint recognised by the end of its path."""

    suffixes: tuple[str, ...] = ()

    def matches(self, path: str) -> bool:
        return path.endswith(self.suffixes)


# Shared readers ---------------------------------------------------------------------------------------------


def loads(data: bytes | str) -> Mapping[str, Any] | None:
    """A JSON object, or None for anything else (a binary body is told by its first byte, not decoded)."""
    if data[:1] not in _JSON_STARTS:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, Mapping) else None


def read_params(
    source: Mapping[str, Any],
    attrs: dict[str, AttributeValue],
    names: tuple[tuple[str, str], ...] = COMMON_PARAMS,
    *,
    stop_keys: tuple[str, ...] = ("stop", "stop_sequences"),
) -> None:
    """Scalar request parameters (`names`: field -> attribute) and the stop sequences into `attrs`."""
    for key, attr in names:
        if key in source:  # most requests set few of them: a membership test is the cheap miss
            value = source[key]
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                attrs[attr] = value
    for key in stop_keys:
        stop = source.get(key)
        if isinstance(stop, str):
            attrs[semconv.REQUEST_STOP_SEQUENCES] = [stop]
            return
        if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
            attrs[semconv.REQUEST_STOP_SEQUENCES] = list(stop)
            return


def read_options(body: Mapping[str, Any], attrs: dict[str, AttributeValue]) -> None:
    """The reasoning effort (`reasoning_effort`, the Responses API's `reasoning.effort`), the response format's type
    (`response_format.type`, the Responses API's `text.format.type`) and how many `tools` a request offers; never
    the tools, schemas or content themselves."""
    effort = body.get("reasoning_effort")
    reasoning = body.get("reasoning")
    if not isinstance(effort, str) and isinstance(reasoning, Mapping):
        effort = reasoning.get("effort")
    if isinstance(effort, str) and effort:
        attrs[semconv.REQUEST_REASONING_EFFORT] = effort
    kind = _type_of(body.get("response_format"))
    text = body.get("text")
    if kind is None and isinstance(text, Mapping):
        kind = _type_of(text.get("format"))
    if kind is not None:
        attrs[semconv.REQUEST_RESPONSE_FORMAT] = kind
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        attrs[semconv.REQUEST_TOOL_COUNT] = len(tools)


def _type_of(found: Any) -> str | None:
    kind = found.get("type") if isinstance(found, Mapping) else None
    return kind if isinstance(kind, str) and kind else None


def end_user(body: Mapping[str, Any]) -> str | None:
    """The SDKs' own end-user fields: OpenAI `user` / `safety_identifier`, Anthropic `metadata.user_id`."""
    for key in ("user", "safety_identifier"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping):
        value = metadata.get("user_id")
        if isinstance(value, str) and value:
            return value
    return None


def input_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The prompt fields of a request body, for content capture."""
    return {k: body[k] for k in _INPUT_FIELDS if k in body}


def text(value: Any) -> str | None:
    """A non-empty string, or None."""
    return value if isinstance(value, str) and value else None


def ids(answer: Answer, data: Mapping[str, Any], id_key: str = "id", model_key: str = "model") -> None:
    """The answer's id (the first non-empty one) and model (the last one)."""
    if answer.response_id is None:
        found = data.get(id_key)
        if isinstance(found, str) and found:
            answer.response_id = found
    model = data.get(model_key)
    if isinstance(model, str) and model:
        answer.response_model = model


def tier(answer: Answer, value: Any) -> None:
    if isinstance(value, str) and value:
        answer.service_tier = value


def present(usage: Mapping[str, Any]) -> dict[str, Any]:
    """A usage object without its null fields."""
    return {k: v for k, v in usage.items() if v is not None}
