"""An app that calls OpenAI, Anthropic and Gemini through their SDKs, with the instrumentations it is told to load.

Run under `opentelemetry-instrument` with every auto-loaded instrumentation disabled
(`OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=*`: the launcher still sets up the OTLP exporters and batch processors from
the `OTEL_*` environment), it instruments the ones named in `PEER_APP_INSTRUMENTATIONS` (keys of `INSTRUMENTATIONS`),
starts a fake provider of its own (so that it can script the failed calls), makes `CALLS`, and writes what the
provider answered for each call, one JSON object a line, to `PEER_APP_ANSWERS`.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import openai
from google import genai
from google.genai import types

import llmtally
from llmtally.demo.fake_provider import FakeProvider

INSTRUMENTATIONS = {
    "llmtally": "llmtally",
    "otel-openai": "opentelemetry.instrumentation.genai.openai:OpenAIInstrumentor",
    "otel-anthropic": "opentelemetry.instrumentation.genai.anthropic:AnthropicInstrumentor",
    "otel-google-genai": "opentelemetry.instrumentation.google_genai:GoogleGenAiSdkInstrumentor",
    "openllmetry-openai": "opentelemetry.instrumentation.openai:OpenAIInstrumentor",
    "openllmetry-anthropic": "opentelemetry.instrumentation.anthropic:AnthropicInstrumentor",
}
MESSAGES: Any = [{"role": "user", "content": "Summarise our Q3 signals in one line."}]
CALLS = 10


def instrument(names: list[str]) -> None:
    for name in names:
        target = INSTRUMENTATIONS[name]
        if target == "llmtally":
            llmtally.instrument()
            continue
        module, cls = target.split(":")
        # The official google-genai instrumentation names google-genai < 3 as its range; it works with 3.
        getattr(importlib.import_module(module), cls)().instrument(skip_dep_check=True)


def run(fake: FakeProvider, answer: Callable[..., None]) -> None:
    """Makes the calls (each once: no SDK retries); `answer` gets what the provider answered to each."""
    oai = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-peer-app-0123456789", max_retries=0)
    chat = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert chat.usage is not None
    answer("openai", "gpt-4o-mini", chat.id, chat.usage.prompt_tokens, chat.usage.completion_tokens)
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    last = chunks[-1]
    assert last.usage is not None
    answer("openai", "gpt-4o-mini", last.id, last.usage.prompt_tokens, last.usage.completion_tokens)
    response = oai.responses.create(model="gpt-4.1", input="Classify this signal.")
    assert response.usage is not None
    answer("openai", "gpt-4.1", response.id, response.usage.input_tokens, response.usage.output_tokens)
    vectors = oai.embeddings.create(model="text-embedding-3-small", input=["signal one"])
    answer("openai", "text-embedding-3-small", None, vectors.usage.prompt_tokens, 0)
    fake.fail_next(429)
    _fails(lambda: oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES), openai.RateLimitError)
    answer("openai", "gpt-4o-mini", None, 0, 0, failed=True)

    claude = anthropic.Anthropic(base_url=fake.base_url, api_key="sk-ant-peer-app-0123456789", max_retries=0)
    message = claude.messages.create(model="claude-sonnet-4-5", max_tokens=256, messages=MESSAGES)
    answer("anthropic", "claude-sonnet-4-5", message.id, *_anthropic_usage(message.usage))
    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=256, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    answer("anthropic", "claude-haiku-4-5", final.id, *_anthropic_usage(final.usage))
    fake.fail_next(529)
    _fails(
        lambda: claude.messages.create(model="claude-sonnet-4-5", max_tokens=256, messages=MESSAGES),
        anthropic.APIStatusError,
    )
    answer("anthropic", "claude-sonnet-4-5", None, 0, 0, failed=True)

    gemini = genai.Client(api_key="peer-app-gemini-key", http_options=types.HttpOptions(base_url=fake.base_url))
    content = gemini.models.generate_content(model="gemini-2.5-flash", contents="Draft the Q3 summary.")
    usage = content.usage_metadata
    assert usage is not None and usage.prompt_token_count is not None
    output = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
    answer("gemini", "gemini-2.5-flash", content.response_id, usage.prompt_token_count, output)
    fake.fail_next(500)
    _fails(lambda: gemini.models.generate_content(model="gemini-2.5-flash", contents="Again."), Exception)
    answer("gemini", "gemini-2.5-flash", None, 0, 0, failed=True)


def _anthropic_usage(usage: Any) -> tuple[int, int]:
    """Input as the GenAI semconv counts it (cache reads and writes included), output."""
    cached = (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    return usage.input_tokens + cached, usage.output_tokens


def _fails(call: Callable[[], object], error: type[BaseException]) -> None:
    try:
        call()
    except error:
        return
    raise AssertionError("the call was to fail")


def main() -> None:
    instrument([n for n in os.environ.get("PEER_APP_INSTRUMENTATIONS", "").split(",") if n])
    answers: list[dict[str, Any]] = []

    def answer(
        api: str, model: str, response_id: str | None, input_tokens: int, output_tokens: int, *, failed: bool = False
    ) -> None:
        answers.append(
            {
                "api": api,
                "model": model,
                "response_id": response_id,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "failed": failed,
            }
        )

    with FakeProvider() as fake:
        run(fake, answer)
        assert len(fake.requests) == len(answers) == CALLS, (len(fake.requests), len(answers))
    Path(os.environ["PEER_APP_ANSWERS"]).write_text("".join(json.dumps(a) + "\n" for a in answers))


if __name__ == "__main__":
    main()
