"""What every llmtally instrumentor shares: turning the runtime and the HTTP-client hook on and off.

The HTTP-client hook stays installed while any llmtally instrumentor is on (the OpenAI and Anthropic hooks read
answers through it); calls no SDK hook opened are recorded only while `llmtally_http` is on.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from . import runtime
from .transport import httpx as transport


class LLMInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """An `opentelemetry_instrumentor` entry point of llmtally: `name` is the hook, `requires` what it hooks."""

    name = ""
    requires: tuple[str, ...] = ()

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.requires

    def _instrument(self, **kwargs: Any) -> None:
        runtime.activate(self.name, **kwargs)
        transport.install()
        self.wrap()

    def _uninstrument(self, **kwargs: Any) -> None:
        self.unwrap()
        if runtime.deactivate(self.name):
            transport.uninstall()

    def wrap(self) -> None:
        """Wraps the library's methods."""

    def unwrap(self) -> None:
        """Puts the library's methods back."""
