"""RunAPI: a self-hostable LLM API gateway with exact per-token billing."""
