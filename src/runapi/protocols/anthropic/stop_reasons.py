"""Why a generation stopped, in both protocols: one table, read both ways.

`finish_reason(stop_reason)` turns an Anthropic upstream's `stop_reason` into OpenAI's
`finish_reason`; `stop_reason(finish_reason)` turns an OpenAI-protocol upstream's into
Anthropic's, for `/v1/messages`. Each row pairs an Anthropic reason with the OpenAI reason it
becomes; the first row naming an OpenAI reason is the one it turns back into.
"""

from __future__ import annotations

__all__ = ["finish_reason", "stop_reason"]

_PAIRS = (  # (Anthropic stop_reason, OpenAI finish_reason)
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("pause_turn", "stop"),
    ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"),
    ("tool_use", "tool_calls"),
    ("tool_use", "function_call"),  # OpenAI's legacy function calling
    ("refusal", "content_filter"),
)
_TO_OPENAI = {anthropic: openai for anthropic, openai in reversed(_PAIRS) if openai != "function_call"}
_TO_ANTHROPIC = {openai: anthropic for anthropic, openai in reversed(_PAIRS)}


def finish_reason(stop_reason: object) -> str:
    """OpenAI's `finish_reason` for an Anthropic `stop_reason` (`stop` for one it does not know)."""
    return _TO_OPENAI.get(str(stop_reason), "stop")


def stop_reason(finish_reason: object) -> str:
    """Anthropic's `stop_reason` for an OpenAI `finish_reason` (`end_turn` for one it does not know)."""
    return _TO_ANTHROPIC.get(str(finish_reason), "end_turn")
