"""Scripted agent exchanges: the turns a simulated model plays, one per assistant turn of the conversation.

A script is a list of turns, each a text, one or more tool calls, or both:

    [{"tool_call": {"name": "Read", "arguments": {"file_path": "/tmp/x/notes.txt"}}},
     {"text": "The notes say hello."}]

The turn played is `script[k]`, k being the number of assistant messages already in the
request's conversation (the same count in OpenAI chat and Anthropic Messages bodies, so a
client that sends the whole history, as agents do, walks the script one turn per request).
Past the end of the script the simulator answers as it would without one. A tool call
without `arguments` gets arguments generated from the tool's JSON schema (see
`schema_values`). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

__all__ = ["ScriptTurn", "ScriptedToolCall", "assistant_turns", "current_turn"]


class ScriptedToolCall(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One tool call of a scripted turn; `arguments` None means generated from the tool's schema."""

    name: str
    arguments: dict[str, Any] | None = None


class ScriptTurn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One assistant turn: `text`, then the tool calls (`tool_call` first, then `tool_calls`)."""

    text: str | None = None
    tool_call: ScriptedToolCall | None = None
    tool_calls: tuple[ScriptedToolCall, ...] = ()

    def __post_init__(self) -> None:
        if self.text is None and self.tool_call is None and not self.tool_calls:
            raise ValueError("a script turn needs `text`, `tool_call` or `tool_calls`")

    @property
    def calls(self) -> tuple[ScriptedToolCall, ...]:
        return ((self.tool_call,) if self.tool_call else ()) + self.tool_calls


def assistant_turns(messages: Sequence[Mapping[str, Any]]) -> int:
    """How many assistant messages the conversation holds."""
    return sum(1 for message in messages if isinstance(message, Mapping) and message.get("role") == "assistant")


def current_turn(script: Sequence[ScriptTurn], messages: Sequence[Mapping[str, Any]]) -> ScriptTurn | None:
    """The turn to play for this conversation, or None past the end of the script."""
    index = assistant_turns(messages)
    return script[index] if index < len(script) else None
