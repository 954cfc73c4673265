"""The call an SDK hook has opened in this context, so that the HTTP hook joins it instead of opening another."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .call import LLMCall

current_call: ContextVar[LLMCall | None] = ContextVar("llmtally_current_call", default=None)
