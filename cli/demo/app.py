"""An example LLM app: what a team's code looks like, with no llmtally code but `llmtally.attributes`.

Run it under `opentelemetry-instrument` (or after `llmtally.instrument()`) against a provider at
`LLMTALLY_DEMO_BASE_URL` (the fake provider, by default on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import os

import anthropic
import boto3
import httpx2
import openai
from google import genai
from google.genai import types

import llmtally

MESSAGES = [{"role": "user", "content": "Summarise our Q3 signals in one line."}]
APP_CALLS = 11
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
    with llmtally.attributes(user="carol", feature="report_writer", department="finance"):
        gemini = genai.Client(api_key="demo-gemini-key-0123456789", http_options=types.HttpOptions(base_url=base_url))
        gemini.models.generate_content(model="gemini-2.5-flash", contents="Draft the Q3 summary.")
        for _ in gemini.models.generate_content_stream(model="gemini-2.5-flash", contents="And a title."):
            pass
        bedrock = boto3.client(
            "bedrock-runtime",
            endpoint_url=base_url,
            region_name="us-east-1",
            aws_access_key_id="AKIADEMODEMODEMO0000",
            aws_secret_access_key="demo-secret-key",
        )
        bedrock.converse(
            modelId="us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            messages=[{"role": "user", "content": [{"text": "Check the summary."}]}],
            inferenceConfig={"maxTokens": 256},
        )
    return APP_CALLS


async def _async_calls(base_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="sk-demo-openai-key-0123456789")
    await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    await client.close()


def main() -> None:
    base_url = os.environ.get("LLMTALLY_DEMO_BASE_URL", "http://127.0.0.1:8765")
    calls = run(base_url)
    print(
        f"made {calls} LLM requests (OpenAI, Anthropic, Ollama, Gemini, Bedrock; streamed and not, sync and async)"
        f" to {base_url}"
    )


if __name__ == "__main__":
    main()
