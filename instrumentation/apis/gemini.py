"""Gemini's API: `:generateContent`, `:streamGenerateContent`, `:embedContent` and `:batchEmbedContents`, on the
Gemini API paths (`/v1beta/models/{model}:...`) and Vertex AI's
(`/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:...`). `:countTokens` is no LLM call.

The model is named in the path; the parameters are in `generationConfig`. Usage is `usageMetadata`, read as
genai-prices' google extractor reads it: input = `promptTokenCount` (cached tokens included) +
`toolUsePromptTokenCount`, output = `candidatesTokenCount` + `thoughtsTokenCount`, and the details by modality under
genai-prices' usage keys. A stream (Server-Sent Events with `?alt=sse`, else one JSON array) carries the usage so far
on each chunk; the last chunk, which has the finish reasons, has it all, and a byte test tells it. Errors are
`{"error": {"code", "message", "status"}}`, also as a stream's last event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .. import semconv
from ..usage import Usage, count
from ..wire import Event, events
from .base import Answer, PathEndpoint, Request, ids, loads, read_params

GEMINI = "gcp.gemini"  # the provider for hosts the host map does not know (Vertex AI's are named by their host)

# generationConfig field -> span attribute (the REST API also takes the fields in snake case).
PARAMS: tuple[tuple[str, str], ...] = (
    ("temperature", semconv.REQUEST_TEMPERATURE),
    ("topP", semconv.REQUEST_TOP_P),
    ("topK", semconv.REQUEST_TOP_K),
    ("maxOutputTokens", semconv.REQUEST_MAX_TOKENS),
    ("candidateCount", semconv.REQUEST_CHOICE_COUNT),
    ("seed", semconv.REQUEST_SEED),
    ("presencePenalty", semconv.REQUEST_PRESENCE_PENALTY),
    ("frequencyPenalty", semconv.REQUEST_FREQUENCY_PENALTY),
    ("top_p", semconv.REQUEST_TOP_P),
    ("top_k", semconv.REQUEST_TOP_K),
    ("max_output_tokens", semconv.REQUEST_MAX_TOKENS),
    ("candidate_count", semconv.REQUEST_CHOICE_COUNT),
    ("presence_penalty", semconv.REQUEST_PRESENCE_PENALTY),
    ("frequency_penalty", semconv.REQUEST_FREQUENCY_PENALTY),
)
_STOP_KEYS = ("stopSequences", "stop_sequences")

# usageMetadata's details by modality -> genai-prices usage keys, exactly as its google extractor maps them (the
# first entry of each modality counts; DOCUMENT tokens are image tokens; tool-use prompt tokens count twice: as
# input of their modality and as tool input).
_DETAILS: tuple[tuple[str, dict[str, tuple[str, ...]]], ...] = (
    (
        "promptTokensDetails",
        {
            "TEXT": ("input_text_tokens",),
            "AUDIO": ("input_audio_tokens",),
            "IMAGE": ("input_image_tokens",),
            "DOCUMENT": ("input_image_tokens",),
            "VIDEO": ("input_video_tokens",),
        },
    ),
    (
        "cacheTokensDetails",
        {
            "TEXT": ("cache_text_read_tokens",),
            "AUDIO": ("cache_audio_read_tokens",),
            "IMAGE": ("cache_image_read_tokens",),
            "DOCUMENT": ("cache_image_read_tokens",),
            "VIDEO": ("cache_video_read_tokens",),
        },
    ),
    (
        "candidatesTokensDetails",
        {
            "TEXT": ("output_text_tokens",),
            "AUDIO": ("output_audio_tokens",),
            "IMAGE": ("output_image_tokens",),
            "DOCUMENT": ("output_image_tokens",),
            "VIDEO": ("output_video_tokens",),
        },
    ),
    (
        "toolUsePromptTokensDetails",
        {
            "TEXT": ("input_text_tokens", "input_text_tool_tokens"),
            "AUDIO": ("input_audio_tokens", "input_audio_tool_tokens"),
            "IMAGE": ("input_image_tokens", "input_image_tool_tokens"),
            "DOCUMENT": ("input_image_tokens", "input_image_tool_tokens"),
            "VIDEO": ("input_video_tokens", "input_video_tool_tokens"),
        },
    ),
)

# Google's canonical error statuses, named as `errors.from_provider` reads provider error names (an error inside a
# streamed answer has no HTTP status of its own to go by).
_ERROR_KINDS = {
    "RESOURCE_EXHAUSTED": "rate_limit",
    "UNAUTHENTICATED": "authentication_error",
    "PERMISSION_DENIED": "permission_denied",
    "NOT_FOUND": "not_found",
    "INVALID_ARGUMENT": "invalid_argument",
    "FAILED_PRECONDITION": "invalid_precondition",
    "OUT_OF_RANGE": "invalid_range",
    "DEADLINE_EXCEEDED": "timeout",
    "UNAVAILABLE": "overloaded",
    "INTERNAL": "server_error",
    "UNKNOWN": "server_error",
    "DATA_LOSS": "server_error",
}
_ERROR_CODES = {400: "invalid_argument", 401: "authentication_error", 403: "permission_denied", 404: "not_found"}
_ERROR_CODES |= {429: "rate_limit", 503: "overloaded", 504: "timeout"}

_BYTE_MARKS = (b'"finishReason"', b'"error"')
_DECODER = json.JSONDecoder()
_TEXT_MARKS = ('"finishReason"', '"error"')


def usage_from(meta: Mapping[str, Any]) -> Usage:
    """`usageMetadata` in the semconv's shape, its details by modality under genai-prices' usage keys."""
    prompt = count(meta.get("promptTokenCount"))
    tool = count(meta.get("toolUsePromptTokenCount"))
    thoughts = count(meta.get("thoughtsTokenCount"))
    output = count(meta.get("candidatesTokenCount")) + thoughts
    units: dict[str, int] = {}
    if tool:
        units["input_tool_tokens"] = tool
    for field, keys in _DETAILS:
        items = meta.get(field)
        if isinstance(items, list) and items:
            _modalities(items, keys, units)
    return Usage(
        input=prompt + tool,
        output=output,
        total=count(meta.get("totalTokenCount")) or prompt + tool + output,
        cache_read=count(meta.get("cachedContentTokenCount")),
        reasoning=thoughts,
        input_audio=units.pop("input_audio_tokens", 0),
        output_audio=units.pop("output_audio_tokens", 0),
        extra=units,
    )


def _modalities(items: list[Any], keys: Mapping[str, tuple[str, ...]], units: dict[str, int]) -> None:
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, Mapping):
            continue
        modality = item.get("modality")
        if isinstance(modality, str) and modality in keys and modality not in seen:
            seen.add(modality)
            tokens = count(item.get("tokenCount"))
            if tokens:
                for key in keys[modality]:
                    units[key] = units.get(key, 0) + tokens


def model_from_path(path: str) -> str:
    """The model a request path names: `{model}` of `.../models/{model}:method` (Vertex AI's
    `publishers/{publisher}/models/{model}` too), else the last two segments (`tunedModels/{id}`, `endpoints/{id}`)."""
    head = path.rpartition(":")[0]
    if not head:
        return ""
    cut = head.rfind("/models/")
    if cut >= 0:
        return head[cut + 8 :]
    if head.startswith("models/"):
        return head[7:]
    return "/".join(head.rsplit("/", 2)[-2:]).lstrip("/")


def read_response(answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
    """One answer object: a whole answer, or one chunk of a streamed one."""
    ids(answer, data, "responseId", "modelVersion")
    error = data.get("error")
    if isinstance(error, Mapping):
        read_error_object(answer, data)
    candidates = data.get("candidates")
    if isinstance(candidates, list):
        for candidate in candidates:
            if not isinstance(candidate, Mapping):
                continue
            reason = candidate.get("finishReason")
            if isinstance(reason, str) and reason:
                answer.finish_reasons.append(reason)
                answer.saw_end = True
            if capture and not candidate.get("index"):
                _said(answer, candidate)
    else:
        feedback = data.get("promptFeedback")
        blocked = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
        if isinstance(blocked, str) and blocked:  # the prompt was refused: no candidates at all
            answer.finish_reasons.append(blocked)
            answer.saw_end = True
    usage = data.get("usageMetadata")
    if isinstance(usage, Mapping):
        answer.usage = usage_from(usage)


def _said(answer: Answer, candidate: Mapping[str, Any]) -> None:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, Mapping) else None
    for part in parts if isinstance(parts, list) else ():
        if isinstance(part, Mapping) and isinstance(part.get("text"), str) and not part.get("thought"):
            answer.output.append(part["text"])


def read_error_object(answer: Answer, data: Any) -> None:
    """An error answer, parsed: `{"error": {...}}`, or a list of one (a JSON-array stream's error)."""
    if isinstance(data, list) and data:
        data = data[0]
    if not isinstance(data, Mapping):
        return
    error = data.get("error")
    if not isinstance(error, Mapping):
        if isinstance(data.get("message"), str):
            answer.fail(None, data["message"])
        return
    status, code = error.get("status"), error.get("code")
    kind = _ERROR_KINDS.get(status) if isinstance(status, str) else None
    if kind is None and isinstance(code, int):
        kind = _ERROR_CODES.get(code, "server_error" if code >= 500 else None)
    answer.fail(kind or status or "stream_error", error.get("message", ""))


class GeminiEndpoint(PathEndpoint):
    """What Gemini's request shapes share: the model in the path, whole answers read from their text."""

    provider = GEMINI
    markers = _BYTE_MARKS

    def model_of(self, body: Mapping[str, Any], path: str) -> str:
        return model_from_path(path)

    def read_body(self, answer: Answer, body: bytes, *, capture: bool) -> None:
        self.read_text(answer, body, capture=capture)

    def read_text(self, answer: Answer, text: bytes | str, *, capture: bool) -> None:
        """A whole successful answer, as text (an SDK hook has it as a string)."""
        data = loads(text)
        if data is not None:
            answer.saw_end = True
            read_response(answer, data, capture=capture)

    def read_whole(self, answer: Answer, data: Mapping[str, Any], *, capture: bool) -> None:
        read_response(answer, data, capture=capture)

    def read_error(self, answer: Answer, body: bytes) -> None:
        try:
            data = json.loads(body) if body[:1] in (b"{", b"[", b" ", b"\n") else None
        except ValueError:
            data = None
        if data is None and body:
            answer.fail(None, body[:500].decode("utf-8", "replace"))
        else:
            read_error_object(answer, data)


class GenerateContent(GeminiEndpoint):
    api = "gemini.generate_content"
    operation = "generate_content"
    suffixes = (":generateContent", ":streamGenerateContent")

    def streams(self, body: Mapping[str, Any], path: str) -> bool:
        return path.endswith(":streamGenerateContent")

    def read_params(self, body: Mapping[str, Any], request: Request) -> None:
        config = body.get("generationConfig")
        if config is None:
            config = body.get("generation_config")
        if isinstance(config, Mapping):
            read_params(config, request.attributes, PARAMS, stop_keys=_STOP_KEYS)

    def read_body(self, answer: Answer, body: bytes, *, capture: bool) -> None:
        if body.startswith(b"data:"):  # a stream the app read whole
            for event in events(body.replace(b"\r\n", b"\n")):
                self.read_chunk(answer, event.data, capture=capture)
            return
        if body.lstrip()[:1] == b"[":  # a stream without alt=sse: one JSON array of chunks, read at its end
            try:
                chunks = json.loads(body)
            except ValueError:
                return
            if isinstance(chunks, list):
                answer.saw_end = True
                for chunk in chunks:
                    if isinstance(chunk, Mapping):
                        read_response(answer, chunk, capture=capture)
            return
        self.read_text(answer, body, capture=capture)

    def read_event(self, answer: Answer, event: Event, *, capture: bool) -> bool:
        self.read_chunk(answer, event.data, capture=capture)
        return True

    def read_chunk(self, answer: Answer, data: bytes | str, *, capture: bool) -> None:
        """One streamed chunk, as text. Parsed only when it is the first (the id and model), the last (finish
        reasons and the whole usage) or an error, or when content is captured: most chunks carry only text."""
        if isinstance(data, str):
            marked = _TEXT_MARKS[0] in data or _TEXT_MARKS[1] in data
        else:
            marked = _BYTE_MARKS[0] in data or _BYTE_MARKS[1] in data
        if marked or capture or answer.partial is None:
            obj = loads(data)
            if obj is not None:
                answer.partial = True  # the first chunk was read
                read_response(answer, obj, capture=capture)

    def on_event(self, answer: Answer, name: str, data: Mapping[str, Any], *, capture: bool) -> None:
        answer.partial = True
        read_response(answer, data, capture=capture)


class Embeddings(GeminiEndpoint):
    api = "gemini.embeddings"
    operation = "embeddings"
    suffixes = (":embedContent", ":batchEmbedContents")

    def read_params(self, body: Mapping[str, Any], request: Request) -> None:
        """Embedding requests have no generation parameters."""

    def read_text(self, answer: Answer, text: bytes | str, *, capture: bool) -> None:
        """Only the usage object is parsed: the vectors can be megabytes."""
        answer.saw_end = True
        if isinstance(text, bytes):
            at = text.rfind(b'"usageMetadata"')
            rest = text[at:].decode("utf-8", "replace") if at >= 0 else ""
        else:
            at = text.rfind('"usageMetadata"')
            rest = text[at:] if at >= 0 else ""
        start = rest.find("{")
        try:
            usage, _ = _DECODER.raw_decode(rest, start) if start >= 0 else (None, 0)
        except ValueError:
            return
        if isinstance(usage, Mapping):
            answer.usage = usage_from(usage)


GENERATE_CONTENT = GenerateContent()
EMBEDDINGS = Embeddings()
ENDPOINTS = (GENERATE_CONTENT, EMBEDDINGS)
