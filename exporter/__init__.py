"""The receiver, `llmtally serve`: receive -> normalise -> price -> store / metrics / budgets -> api.

Its stages are subpackages named after them; they arrive with the receiver work and may import the server-side
dependencies that `llmtally.instrumentation` must never load.
"""
