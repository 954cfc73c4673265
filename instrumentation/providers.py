"""Which provider a request goes to, from its URL (and the SDK client that sends it)."""

from __future__ import annotations

from collections.abc import Mapping
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
    "api.cohere.com": "cohere",
    "api.cohere.ai": "cohere",
    "generativelanguage.googleapis.com": "gcp.gemini",
    "aiplatform.googleapis.com": "gcp.vertex_ai",
}
AZURE_OPENAI: Final = "azure.ai.openai"
VERTEX_AI: Final = "gcp.vertex_ai"
BEDROCK: Final = "aws.bedrock"
GEMINI: Final = "gcp.gemini"
HOST_SUFFIXES: Final[tuple[tuple[str, str], ...]] = (
    (".openai.azure.com", AZURE_OPENAI),
    (".cognitiveservices.azure.com", AZURE_OPENAI),
    (".services.ai.azure.com", AZURE_OPENAI),
    ("-aiplatform.googleapis.com", VERTEX_AI),  # {region}-aiplatform.googleapis.com
)
OLLAMA_PORT: Final = 11434
VLLM_HINT: Final = "vllm"


def provider_for(
    host: str,
    port: int | None,
    path: str,
    *,
    default: str | None,
    overrides: Mapping[str, str],
    client: str | None = None,
) -> str:
    """The provider name for a request to `host:port/path`.

    Order: the configured host map (`host:port` then `host`), the provider the SDK client names (`client`: its
    Azure, Bedrock or Vertex client classes, or an `api-version` query for Azure, whatever the host: gateways and
    custom domains), the known public hosts, host suffixes (Azure, Vertex AI), Bedrock's runtime hosts and Azure
    deployment paths, Ollama's port or native paths, then `default` (the SDK's own provider, or the one provider
    that speaks the request's API), then `openai_compatible`.
    """
    host = host.lower()
    if overrides:
        for key in (f"{host}:{port}", host):
            if key in overrides:
                return overrides[key]
    if client:
        return client
    if host in KNOWN_HOSTS:
        return KNOWN_HOSTS[host]
    for suffix, name in HOST_SUFFIXES:
        if host.endswith(suffix):
            return name
    if host.startswith(("bedrock-runtime.", "bedrock-runtime-fips.")) and host.endswith(".amazonaws.com"):
        return BEDROCK
    if "/openai/deployments/" in path:
        return AZURE_OPENAI
    if port == OLLAMA_PORT or path.startswith("/api/"):
        return "ollama"
    if VLLM_HINT in host:
        return "vllm"
    return default or "openai_compatible"
