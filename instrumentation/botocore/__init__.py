"""`llmtally_botocore`: the botocore (boto3) hook for Amazon Bedrock's runtime.

It wraps `botocore.client.BaseClient._make_api_call`, through which every AWS SDK call passes. A call of another
operation or service passes straight on after one set look-up on the operation name (and, for the four Bedrock
runtime operation names, one on the service name): nothing is read, recorded or registered for it. A
`bedrock-runtime` Converse, ConverseStream, InvokeModel or InvokeModelWithResponseStream call is one record, retries
included (`hook`); its answer is read from botocore's parsed response (`answers`) by `apis.bedrock`.
"""

from __future__ import annotations

from ..instrumentor import LLMInstrumentor


class BotocoreInstrumentor(LLMInstrumentor):
    """Records every Bedrock runtime model call made with boto3/botocore."""

    name = "botocore"
    requires = ("botocore >= 1.34",)

    def wrap(self) -> None:
        from . import hook

        hook.install()

    def unwrap(self) -> None:
        from . import hook

        hook.uninstall()
