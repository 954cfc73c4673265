"""Budgets, provider credits and alert thresholds: configured in llmtally.yaml, spent from the audit store.

`config` reads the `budgets:`, `credits:` and `alerts:` sections; `periods` gives calendar period bounds; `status`
computes each budget's and credit's state from the store at a moment; `metrics` exposes them (and the thresholds the
alert rules compare against) to Prometheus.
"""
