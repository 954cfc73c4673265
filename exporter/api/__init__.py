"""The analytics API: reports over the audit store, served as JSON under /api/v1 and by the `llmtally` commands."""
