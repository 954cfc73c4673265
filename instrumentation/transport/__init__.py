"""The HTTP-client hooks every LLM API attempt made with `httpx2` or `httpx` passes through."""
