"""Demo helpers: a fake LLM provider for tests, demos and benchmarks."""
