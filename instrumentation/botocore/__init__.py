"""`llmtally_botocore`: the botocore hook for `bedrock-runtime` (being written)."""

from __future__ import annotations

from ..instrumentor import LLMInstrumentor


class BotocoreInstrumentor(LLMInstrumentor):
    """Records every Bedrock runtime model call made with boto3/botocore."""

    name = "botocore"
    requires = ("botocore >= 1.34",)
