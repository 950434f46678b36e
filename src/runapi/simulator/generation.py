"""The protocol-neutral shape of one simulated generation, and of a scripted stream."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from .config import SimulatorConfig
from .tokens import reply_words

__all__ = ["TOOL_ARGUMENTS", "TOOL_ARGUMENT_FRAGMENTS", "Call", "Reply", "StreamScript", "WireFormat", "plan_reply"]

# Arguments of the simulated tool call, `{"query": "<first reply word>"}`, as streamed.
TOOL_ARGUMENT_FRAGMENTS = ('{"query": "', reply_words(1)[0], '"}')
TOOL_ARGUMENTS = "".join(TOOL_ARGUMENT_FRAGMENTS)


class Call(msgspec.Struct, frozen=True, kw_only=True):
    """What the simulator needs from a request, whatever its protocol."""

    model: str
    stream: bool
    prompt_tokens: int
    max_tokens: int | None = None
    tool: str | None = None
    """Name of the tool to call instead of answering with text."""
    include_usage: bool = False
    """OpenAI `stream_options.include_usage`."""


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """What one simulated generation says and reports."""

    prompt_tokens: int
    words: list[str]
    reasoning: list[str]
    truncated: bool
    """`max_tokens` cut the answer below `SimulatorConfig.completion_tokens`."""
    tool: str | None

    @property
    def completion_tokens(self) -> int:
        return len(self.words) + len(self.reasoning)

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def reasoning_text(self) -> str:
        return " ".join(self.reasoning)


def plan_reply(call: Call, config: SimulatorConfig) -> Reply:
    """Decide the reply: n = min(max_tokens, completion_tokens) answer words, plus reasoning words.

    Reasoning words are `reply_words(reasoning_tokens)` and are not capped by
    `max_tokens`. A tool call reports the same usage as the text it replaces.
    """
    n = config.completion_tokens
    if call.max_tokens is not None:
        n = max(0, min(call.max_tokens, n))
    words = reply_words(n)
    if config.pad_bytes and words:
        words[-1] += "x" * config.pad_bytes
    return Reply(
        prompt_tokens=call.prompt_tokens,
        words=words,
        reasoning=reply_words(config.reasoning_tokens),
        truncated=n < config.completion_tokens,
        tool=call.tool,
    )


class StreamScript(msgspec.Struct, kw_only=True):
    """A whole SSE response as encoded frames, plus the marks faults need.

    `paced[i]` says frame i carries generated tokens (it waits `chunk_delay_ms`);
    `frames[:midpoint]` hold about half the answer; `malformed` is a frame with
    broken JSON and `error` the protocol's in-stream error event.
    """

    frames: list[bytes] = msgspec.field(default_factory=list)
    paced: list[bool] = msgspec.field(default_factory=list)
    midpoint: int = 0
    malformed: bytes = b""
    error: bytes = b""

    def add(self, frame: bytes, *, paced: bool = False) -> None:
        self.frames.append(frame)
        self.paced.append(paced)


class WireFormat(Protocol):
    """One provider protocol: parse a request, render replies and errors as bytes."""

    malformed_json: bytes

    def parse(self, raw: dict[str, Any]) -> Call:
        """Read a decoded body; raises `msgspec.ValidationError` or `ValueError` when invalid."""
        ...

    def completion(self, reply: Reply, call: Call, config: SimulatorConfig) -> bytes: ...

    def stream(self, reply: Reply, call: Call, config: SimulatorConfig) -> StreamScript: ...

    def error(self, status: int, message: str) -> bytes:
        """The provider's error body for an HTTP status."""
        ...
