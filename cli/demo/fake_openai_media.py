"""OpenAI's image and audio APIs for the fake provider, shaped as OpenAI documents them.

- `/images/generations` (JSON) and `/images/edits` (multipart): GPT image models answer base64 images and token
  usage (`input_tokens_details.image_tokens` counts the input images of an edit); DALL-E models answer image URLs
  (or base64 with `response_format: "b64_json"`) and no usage. `stream: true` (GPT image models): named
  `image_generation.*` / `image_edit.*` events, the `completed` one with usage.
- `/audio/speech` (JSON): the audio bytes (`audio/mpeg` for mp3...), or with `stream_format: "sse"`
  `speech.audio.delta` events and a `speech.audio.done` event with token usage.
- `/audio/transcriptions` (multipart): `{"text", "usage"}` with token usage for the GPT-4o transcribe models and
  duration usage for `whisper-1`; `verbose_json` adds the duration and segments; `text`, `srt` and `vtt` are plain
  text; `stream: true`: `transcript.text.delta` events and a `transcript.text.done` event with usage.
- `/audio/translations` (multipart, `whisper-1`): `{"text"}` without usage; `verbose_json` adds the duration.

Errors are OpenAI's `{"error": {...}}` bodies.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import time
import uuid
from typing import Any

from .fake_api import Ctx, FakeAPI, JSONDict, Reply, sse

# --- usage each route reports (exactly these objects are sent, for one image where images are counted) ---------

IMAGE_USAGE: JSONDict = {
    "total_tokens": 4176,
    "input_tokens": 16,
    "output_tokens": 4160,
    "input_tokens_details": {"text_tokens": 16, "image_tokens": 0},
}
EDIT_TEXT_TOKENS = 17
EDIT_IMAGE_TOKENS = 323  # per input image
SPEECH_USAGE: JSONDict = {"input_tokens": 14, "output_tokens": 101, "total_tokens": 115}
TRANSCRIPTION_USAGE: JSONDict = {
    "type": "tokens",
    "input_tokens": 122,
    "input_token_details": {"text_tokens": 8, "audio_tokens": 114},
    "output_tokens": 11,
    "total_tokens": 133,
}
WHISPER_USAGE: JSONDict = {"type": "duration", "seconds": 9}
AUDIO_DURATION = 8.47  # seconds, as `verbose_json` reports it (whisper bills it rounded to the second: 8)
TRANSCRIPT = "Hello from the fake provider."
SPEECH_AUDIO = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 8  # an mp3's tag, then frames
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
_PNG_B64 = base64.b64encode(PNG_1X1).decode()
_SSE = "text/event-stream"
_AUDIO_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid value for 'size'."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-fake***."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for images per minute. Please try again in 2ms."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def _headers() -> dict[str, str]:
    return {"x-request-id": "req_" + uuid.uuid4().hex, "openai-processing-ms": "812"}


def error(status: int, message: str | None) -> tuple[JSONDict, dict[str, str]]:
    """OpenAI's error body for an HTTP status."""
    default = ("server_error" if status >= 500 else "invalid_request_error", None, f"Fake error (HTTP {status}).")
    kind, code, text = _ERRORS.get(status, default)
    return {"error": {"message": message or text, "type": kind, "param": None, "code": code}}, {}


def form(ctx: Ctx) -> dict[str, Any]:
    """The fields of a multipart/form-data body: text fields as strings, files as bytes, repeated names
    (`image[]`) as lists."""
    content_type = ctx.headers.get("content-type", "")
    if "multipart/form-data" not in content_type:
        return {}
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + ctx.body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        data = part.get_payload(decode=True)
        value: Any = data if part.get_filename() else data.decode() if isinstance(data, bytes) else ""
        if name.endswith("[]"):
            fields.setdefault(name[:-2], []).append(value)
        else:
            fields[name] = value
    return fields


def image_usage(images: int, input_images: int = 0) -> JSONDict:
    """The usage of a GPT image model answer: `images` generated from the prompt and `input_images` given."""
    text = EDIT_TEXT_TOKENS if input_images else IMAGE_USAGE["input_tokens"]
    image_in = EDIT_IMAGE_TOKENS * input_images
    out = IMAGE_USAGE["output_tokens"] * images
    return {
        "total_tokens": text + image_in + out,
        "input_tokens": text + image_in,
        "output_tokens": out,
        "input_tokens_details": {"text_tokens": text, "image_tokens": image_in},
    }


def _count(value: Any, default: int = 1) -> int:
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return default


def _true(value: Any) -> bool:
    return value is True or value == "true"


def _images(fields: dict[str, Any], ctx: Ctx, reply: Reply, kind: str, input_images: int) -> None:
    model = str(fields.get("model") or ctx.model)
    n = _count(fields.get("n"))
    created = int(time.time())
    if not model.startswith(("gpt-image", "chatgpt-image")):  # DALL-E: URLs (or base64), no usage
        if fields.get("response_format") == "b64_json":
            items: list[JSONDict] = [{"b64_json": _PNG_B64} for _ in range(n)]
        else:
            items = [{"url": f"https://images.example.com/fake/{uuid.uuid4().hex}.png"} for _ in range(n)]
        if model == "dall-e-3":
            items = [item | {"revised_prompt": str(fields.get("prompt", ""))} for item in items]
        reply.json({"created": created, "data": items})
        return
    usage = image_usage(n, input_images)
    quality, size = fields.get("quality") or "high", fields.get("size") or "1024x1024"
    meta = {"background": "opaque", "output_format": "png", "quality": quality, "size": size}
    if not _true(fields.get("stream")):
        reply.json({"created": created, **meta, "data": [{"b64_json": _PNG_B64} for _ in range(n)], "usage": usage})
        return
    partial = {"type": f"{kind}.partial_image", "b64_json": _PNG_B64, "created_at": created, **meta}
    partials = _count(fields.get("partial_images"), 0) if fields.get("partial_images") else 0
    events = [sse(partial | {"partial_image_index": i}, f"{kind}.partial_image") for i in range(partials)]
    done = {"type": f"{kind}.completed", "b64_json": _PNG_B64, "created_at": created, **meta, "usage": usage}
    events.append(sse(done, f"{kind}.completed"))
    reply.stream(_SSE, events)


def generations(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    """`/images/generations`."""
    _images(req, ctx, reply, "image_generation", 0)


def edits(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    """`/images/edits` (multipart: `image` or `image[]` files, a `mask`, the other fields as text)."""
    fields = form(ctx) or req
    given = fields.get("image")
    inputs = len(given) if isinstance(given, list) else 1
    _images(fields, ctx, reply, "image_edit", inputs)


def speech(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    """`/audio/speech`: audio bytes, or `speech.audio.*` events with `stream_format: "sse"`."""
    if req.get("stream_format") != "sse":
        kind = _AUDIO_TYPES.get(str(req.get("response_format") or "mp3"), "application/octet-stream")
        reply.raw(kind, SPEECH_AUDIO)
        return
    size = -(-len(SPEECH_AUDIO) // max(ctx.chunks, 1))
    pieces = [SPEECH_AUDIO[i : i + size] for i in range(0, len(SPEECH_AUDIO), size)] if ctx.chunks else []
    events = [sse({"type": "speech.audio.delta", "audio": base64.b64encode(p).decode()}) for p in pieces]
    events.append(sse({"type": "speech.audio.done", "usage": SPEECH_USAGE}))
    reply.stream(_SSE, events)


def _words(n: int) -> list[str]:
    words = TRANSCRIPT.split(" ")
    return [(" " if i else "") + words[i % len(words)] for i in range(n)]


def _audio_text(fields: dict[str, Any], ctx: Ctx, reply: Reply, task: str) -> None:
    model = str(fields.get("model") or ctx.model)
    whisper = model.startswith("whisper")
    usage = WHISPER_USAGE if whisper else TRANSCRIPTION_USAGE
    fmt = str(fields.get("response_format") or "json")
    if _true(fields.get("stream")) and not whisper:
        words = _words(ctx.chunks)
        events = [sse({"type": "transcript.text.delta", "delta": w, "logprobs": None}) for w in words]
        events.append(sse({"type": "transcript.text.done", "text": "".join(words), "usage": usage}))
        reply.stream(_SSE, events)
        return
    if fmt in ("text", "srt", "vtt"):
        reply.raw("text/plain; charset=utf-8", (TRANSCRIPT + "\n").encode())
        return
    body: JSONDict = {"text": TRANSCRIPT}
    if fmt == "verbose_json":
        segment = {"id": 0, "seek": 0, "start": 0.0, "end": AUDIO_DURATION, "text": TRANSCRIPT, "tokens": [50364]}
        language = "english"
        body = {"task": task, "language": language, "duration": AUDIO_DURATION, "text": TRANSCRIPT}
        body["segments"] = [segment | {"temperature": 0.0, "avg_logprob": -0.3, "no_speech_prob": 0.01}]
    if task == "transcribe":
        body["usage"] = usage
    reply.json(body)


def transcriptions(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    """`/audio/transcriptions` (multipart)."""
    _audio_text(form(ctx) or req, ctx, reply, "transcribe")


def translations(req: JSONDict, ctx: Ctx, reply: Reply) -> None:
    """`/audio/translations` (multipart; whisper-1 only, no usage in its answers)."""
    _audio_text(form(ctx) or req, ctx, reply, "translate")


API = FakeAPI(
    "openai_media",
    (
        ("/images/generations", generations),
        ("/images/edits", edits),
        ("/audio/speech", speech),
        ("/audio/transcriptions", transcriptions),
        ("/audio/translations", translations),
    ),
    error,
    _headers,
)
