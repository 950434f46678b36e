"""The simulator's token rules: pure, documented, so tests can predict exact usage.

* A text's token count is its number of whitespace-separated words.
* A message costs 3 tokens plus the words of each text part (string content or
  `{"type": "text"}` parts), of tool call arguments and of tool results; an image
  part costs 85 (`SimulatorConfig.image_tokens` changes that: `count_images`). The
  Anthropic `system` prompt, when given, counts like a message.
* Replies are made of `reply_words(n)`, joined by single spaces.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "IMAGE_TOKENS",
    "MESSAGE_OVERHEAD",
    "cache_split",
    "chunk_texts",
    "count_images",
    "count_words",
    "prompt_tokens",
    "reply_words",
]

MESSAGE_OVERHEAD = 3
IMAGE_TOKENS = 85
_IMAGE_PARTS = frozenset({"image", "image_url"})
_VOCABULARY = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua"
).split()


def count_words(text: str) -> int:
    """Tokens in `text`: its number of whitespace-separated words."""
    return len(text.split())


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return count_words(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind in _IMAGE_PARTS:
            total += IMAGE_TOKENS
        elif kind == "tool_use":
            # Anthropic tool input is an object: count its JSON text, as OpenAI's arguments.
            total += count_words(json.dumps(part.get("input", {})))
        elif kind == "tool_result":
            total += _content_tokens(part.get("content"))
        elif isinstance(part.get("text"), str):
            total += count_words(part["text"])
    return total


def prompt_tokens(messages: Sequence[Mapping[str, Any]], system: Any = None) -> int:
    """Prompt tokens of a chat: per message 3 + its words (see the module rules).

    `system` is the Anthropic top-level system prompt (a string or text blocks);
    when not None it adds its words + 3. OpenAI system messages are plain messages.
    """
    total = 0
    for message in messages:
        total += MESSAGE_OVERHEAD + _content_tokens(message.get("content"))
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping) and isinstance(function.get("arguments"), str):
                total += count_words(function["arguments"])
    if system is not None:
        total += MESSAGE_OVERHEAD + _content_tokens(system)
    return total


def count_images(messages: Sequence[Mapping[str, Any]]) -> int:
    """Image parts in the messages' content (each counted as `IMAGE_TOKENS` by `prompt_tokens`)."""
    return sum(1 for message in messages if isinstance(message.get("content"), list)
               for part in message["content"] if isinstance(part, Mapping) and part.get("type") in _IMAGE_PARTS)


def reply_words(n: int) -> list[str]:
    """The first `n` reply words: a fixed lorem-ipsum vocabulary, cycled."""
    size = len(_VOCABULARY)
    return [_VOCABULARY[i % size] for i in range(n)]


def chunk_texts(words: Sequence[str], chunks: int) -> list[str]:
    """Split `words` into streamed text fragments that concatenate to `" ".join(words)`.

    `chunks` = 0 gives one fragment per word; otherwise min(chunks, len(words))
    fragments whose word counts differ by at most one. Every fragment but the
    first starts with the separating space.
    """
    if not words:
        return []
    count = len(words) if chunks <= 0 else min(chunks, len(words))
    size, extra = divmod(len(words), count)
    texts: list[str] = []
    start = 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        text = " ".join(words[start:end])
        texts.append(text if i == 0 else " " + text)
        start = end
    return texts


def cache_split(prompt: int, cached: int, creation: int) -> tuple[int, int]:
    """(cache read, cache write) tokens of a prompt: reads first, both capped at the prompt."""
    read = min(cached, prompt)
    return read, min(creation, prompt - read)
