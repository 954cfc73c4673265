"""Jobs over stored records: retention (`llmtally cleanup`, `serve`'s schedule) and re-pricing (`llmtally reprice`)."""
