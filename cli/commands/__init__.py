"""The `llmtally` analytics and maintenance commands: the API's reports as tables (or JSON) on the terminal."""
