"""What a request asks for, read from its JSON body."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.util.types import AttributeValue

from . import semconv

# Request body field -> span attribute, for the scalar parameters every API shares.
_PARAMS: tuple[tuple[str, str], ...] = (
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
_INPUT_FIELDS = ("messages", "input", "prompt", "system", "instructions")


@dataclass(slots=True)
class RequestInfo:
    """The parts of a request body that telemetry uses."""

    model: str = ""
    stream: bool = False
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    user: str | None = None
    stream_options: bool = False  # the body sets `stream_options` itself
    body: Mapping[str, Any] | None = None  # kept only for content capture


def read_request(body: Mapping[str, Any] | None, *, api: str, url_path: str, keep_body: bool) -> RequestInfo:
    """Reads model, stream flag, parameters and the end user from a request body."""
    info = RequestInfo()
    if not isinstance(body, Mapping):
        body = {}
    model = body.get("model")
    info.model = model if isinstance(model, str) else _deployment(url_path)
    stream = body.get("stream")
    # Ollama's native API streams unless told not to.
    info.stream = bool(stream) if stream is not None else api == "ollama"
    attrs = info.attributes
    options = body.get("options") if api == "ollama" else None
    source = options if isinstance(options, Mapping) else body
    for key, attr in _PARAMS:
        if key in source:  # most requests set few of them: a membership test is the cheap miss
            value = source[key]
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                attrs[attr] = value
    if api == "ollama" and isinstance(options, Mapping) and isinstance(options.get("num_predict"), int):
        attrs[semconv.REQUEST_MAX_TOKENS] = options["num_predict"]
    stop = body.get("stop", body.get("stop_sequences"))
    if isinstance(stop, str):
        attrs[semconv.REQUEST_STOP_SEQUENCES] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        attrs[semconv.REQUEST_STOP_SEQUENCES] = list(stop)
    encoding = body.get("encoding_format")
    if isinstance(encoding, str):
        attrs[semconv.REQUEST_ENCODING_FORMATS] = [encoding]
    attrs[semconv.REQUEST_STREAM] = info.stream
    if api == "anthropic" and isinstance(speed := body.get("speed"), str) and speed:
        attrs[semconv.REQUEST_SPEED] = speed
    info.stream_options = "stream_options" in body
    info.user = _user(body)
    if keep_body:
        info.body = {k: body[k] for k in _INPUT_FIELDS if k in body}
    return info


def parse_body(content: bytes) -> Mapping[str, Any] | None:
    """A JSON object body, or None for anything else."""
    if not content or content[:1] not in (b"{", b" ", b"\n"):
        return None
    try:
        value = json.loads(content)
    except ValueError:
        return None
    return value if isinstance(value, Mapping) else None


def _user(body: Mapping[str, Any]) -> str | None:
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


def _deployment(path: str) -> str:
    """The deployment name of an Azure OpenAI path, which stands for the model there."""
    marker = "/deployments/"
    if marker in path:
        return path.split(marker, 1)[1].split("/", 1)[0]
    return ""
