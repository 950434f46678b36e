"""Inbound wire protocols, each translated onto the chat-completions pipeline (issue 22 moves the others here)."""

__all__: list[str] = []
