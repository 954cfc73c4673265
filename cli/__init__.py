"""llmtally: LLM usage, cost and audit analytics on OpenTelemetry.

In an app: `llmtally.instrument()` (or run it under `opentelemetry-instrument`) and
`with llmtally.attributes(user=..., feature=...):` to attribute calls.
"""

from __future__ import annotations

from llmtally.instrumentation import (
    BudgetError,
    BudgetExceeded,
    BudgetStateUnavailable,
    attributes,
    instrument,
    uninstrument,
)

__all__ = ["BudgetError", "BudgetExceeded", "BudgetStateUnavailable", "attributes", "instrument", "uninstrument"]
