"""An example LLM app: what a team's code looks like, with no llmtally code but `llmtally.attributes`.

Run it under `opentelemetry-instrument` (or after `llmtally.instrument()`) against a provider at
`LLMTALLY_DEMO_BASE_URL` (the fake provider, by default on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import os

import anthropic
import httpx2
import openai

import llmtally

MESSAGES = [{"role": "user", "content": "Summarise our Q3 signals in one line."}]
APP_CALLS = 8
"""How many LLM requests `run` makes."""


def run(base_url: str) -> int:
    """Makes one call of each kind the instrumentation covers; returns how many LLM requests it made."""
    oai = openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-demo-openai-key-0123456789", max_retries=2)
    claude = anthropic.Anthropic(base_url=base_url, api_key="sk-ant-demo-key-0123456789")
    with llmtally.attributes(user="alice", feature="signal_parsing", department="research", api_key="team-a"):
        oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        for _ in oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
            pass
        oai.responses.create(model="gpt-4.1", input="Classify this signal.")
        oai.embeddings.create(model="text-embedding-3-small", input=["signal one", "signal two"])
    with llmtally.attributes(user="bob", feature="support_bot", department="support"):
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=256, messages=MESSAGES)  # type: ignore[arg-type]
        with claude.messages.stream(model="claude-haiku-4-5", max_tokens=256, messages=MESSAGES) as stream:  # type: ignore[arg-type]
            stream.get_final_message()
        httpx2.post(
            f"{base_url}/api/chat",
            json={"model": "llama3.2", "messages": MESSAGES, "stream": False},
        )
        asyncio.run(_async_calls(base_url))
    return APP_CALLS


async def _async_calls(base_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="sk-demo-openai-key-0123456789")
    await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    await client.close()


def main() -> None:
    base_url = os.environ.get("LLMTALLY_DEMO_BASE_URL", "http://127.0.0.1:8765")
    calls = run(base_url)
    print(f"made {calls} LLM requests (OpenAI, Anthropic, Ollama; streamed and not, sync and async) to {base_url}")


if __name__ == "__main__":
    main()
