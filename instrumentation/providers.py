"""Which provider and which API a request goes to, from its URL."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

# Provider names: the GenAI semconv values where they exist, else the provider's own short name.
KNOWN_HOSTS: Final[dict[str, str]] = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.x.ai": "x_ai",
    "api.mistral.ai": "mistral_ai",
    "openrouter.ai": "openrouter",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.fireworks.ai": "fireworks",
    "api.perplexity.ai": "perplexity",
    "api.cohere.ai": "cohere",
    "generativelanguage.googleapis.com": "gcp.gemini",
}
AZURE_OPENAI: Final = "azure.ai.openai"
HOST_SUFFIXES: Final[tuple[tuple[str, str], ...]] = (
    (".openai.azure.com", AZURE_OPENAI),
    (".cognitiveservices.azure.com", AZURE_OPENAI),
    (".services.ai.azure.com", AZURE_OPENAI),
)
OLLAMA_PORT: Final = 11434
VLLM_HINT: Final = "vllm"


@dataclass(frozen=True, slots=True)
class Route:
    """One LLM API: the semconv operation name and the wire format of its answers."""

    operation: str
    api: str  # openai.chat | openai.completions | openai.responses | openai.embeddings | anthropic | ollama


# Path suffix -> route. Checked in order; the first suffix that matches wins.
ROUTES: Final[tuple[tuple[str, Route], ...]] = (
    ("/chat/completions", Route("chat", "openai.chat")),
    ("/completions", Route("text_completion", "openai.completions")),
    ("/responses", Route("chat", "openai.responses")),
    ("/embeddings", Route("embeddings", "openai.embeddings")),
    ("/messages", Route("chat", "anthropic")),
    ("/api/chat", Route("chat", "ollama")),
    ("/api/generate", Route("text_completion", "ollama")),
)


def route_for(path: str) -> Route | None:
    """The LLM API a request path addresses, or None for any other request."""
    path = path.rstrip("/")
    for suffix, route in ROUTES:
        if path.endswith(suffix):
            return route
    return None


def provider_for(
    host: str,
    port: int | None,
    path: str,
    *,
    default: str | None,
    overrides: Mapping[str, str],
    azure: bool = False,
) -> str:
    """The provider name for a request to `host:port/path`.

    Order: the configured host map (`host:port` then `host`), an Azure client (`azure`: the SDK's Azure client
    classes, or an `api-version` query, whatever the host: gateways and custom domains), the known public hosts,
    Azure host suffixes and deployment paths, Ollama's port or native paths, then `default` (the SDK's own
    provider), then `openai_compatible`.
    """
    host = host.lower()
    if overrides:
        for key in (f"{host}:{port}", host):
            if key in overrides:
                return overrides[key]
    if azure:
        return AZURE_OPENAI
    if host in KNOWN_HOSTS:
        return KNOWN_HOSTS[host]
    for suffix, name in HOST_SUFFIXES:
        if host.endswith(suffix):
            return name
    if "/openai/deployments/" in path:
        return AZURE_OPENAI
    if port == OLLAMA_PORT or path.startswith("/api/"):
        return "ollama"
    if VLLM_HINT in host:
        return "vllm"
    return default or "openai_compatible"
