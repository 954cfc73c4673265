"""Statements (chargeback per period and grouping) in CSV, JSON, HTML and PDF, and scheduled reports: `reports:` in
llmtally.yaml run inside `serve`, once across replicas, delivered to a directory, a webhook or e-mail."""
