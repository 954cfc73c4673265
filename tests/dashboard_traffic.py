"""Error and retry traffic for the dashboard test, run under `opentelemetry-instrument`.

It starts its own fake provider (so the failures it scripts line up with its own calls) and makes: one retried
call that then succeeds (OpenAI, a 429 then 200), and one failed call of each error kind (rate limit after the retries,
server error, invalid request, auth, model, timeout, connection error), for OpenAI and Anthropic, in environment
`staging` and feature `error_drill`. Prints how many LLM requests (records) it made.
"""

from __future__ import annotations

from collections.abc import Callable

import anthropic
import openai

import llmtally
from llmtally.demo.fake_provider import FakeProvider

MESSAGES = [{"role": "user", "content": "ping"}]


def main() -> None:
    made = 0
    with FakeProvider() as fake, llmtally.attributes(user="carol", feature="error_drill", environment="staging"):
        oai = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-drill-0123456789", max_retries=1, timeout=0.5)
        claude = anthropic.Anthropic(base_url=fake.base_url, api_key="sk-ant-drill-0123456789", max_retries=0)

        def chat() -> object:
            return oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

        def message() -> object:
            return claude.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES)  # type: ignore[arg-type]

        fake.fail_next(429, retry_after="0")  # retried once, then answered: a retry, not an error
        chat()
        made += 1
        scripts: list[tuple[Callable[[], None], Callable[[], object]]] = [
            (lambda: fake.fail_next(429, times=2, retry_after="0"), chat),  # rate_limit
            (lambda: fake.fail_next(500, times=2), chat),  # server_error
            (lambda: fake.fail_next(400), chat),  # invalid_request
            (lambda: fake.fail_next(401), message),  # auth_error
            (lambda: fake.fail_next(404), message),  # model_error
            (lambda: fake.hang_next(1.5, times=2), chat),  # timeout
            (lambda: fake.drop_next(times=2), chat),  # connection_error
            (lambda: fake.fail_next(529), message),  # anthropic overloaded: server_error
        ]
        for script, call in scripts:
            script()
            try:
                call()
            except (openai.APIError, anthropic.APIError):
                made += 1
            else:
                raise AssertionError(f"{call} did not fail")
    print(made)


if __name__ == "__main__":
    main()
