"""What an upstream adapter hands the pipeline, in OpenAI's chat-completions shape: a complete
answer, or the streamed chunks of one, each with the facts the pipeline meters (usage, output parts)."""

from __future__ import annotations

from typing import Any

import msgspec

from runapi.money import Usage


class UpstreamReply(msgspec.Struct):
    """A complete answer: an OpenAI `chat.completion` object and its usage."""

    body: dict[str, Any]
    usage: Usage | None
    upstream_id: str = ""


class UpstreamChunk(msgspec.Struct):
    """One streamed event, as the JSON of an OpenAI `chat.completion.chunk`.

    `usage` is set on the chunk that reports usage; `usage_only` marks the extra chunk
    with no choices that exists only to carry it. `content_parts` counts pieces of
    generated output (content, reasoning, tool arguments) in this chunk.
    """

    payload: bytes
    usage: Usage | None = None
    usage_only: bool = False
    content_parts: int = 0
    upstream_id: str = ""
