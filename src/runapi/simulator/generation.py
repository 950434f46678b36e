"""The protocol-neutral shape of one simulated generation, and of a scripted stream."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from .config import SimulatorConfig
from .schema_values import example_value
from .tokens import count_words, reply_words

__all__ = ["Call", "OutputFormat", "Reply", "StreamScript", "ToolCallPlan", "WireFormat", "plan_reply",
           "tool_arguments"]

_encode = msgspec.json.Encoder().encode


class OutputFormat(msgspec.Struct, frozen=True, kw_only=True):
    """A structured answer asked for: `json_object` (any object) or `json_schema` (`schema`)."""

    kind: str
    schema: Any = None


class Call(msgspec.Struct, frozen=True, kw_only=True):
    """What the simulator needs from a request, whatever its protocol."""

    model: str
    stream: bool
    prompt_tokens: int
    max_tokens: int | None = None
    tool: str | None = None
    """Name of the tool to call instead of answering with text (the unscripted rule)."""
    include_usage: bool = False
    """OpenAI `stream_options.include_usage`."""
    tools: dict[str, Any] = msgspec.field(default_factory=dict)
    """The request's tools: name → JSON schema of the arguments (None when it has none)."""
    output_format: OutputFormat | None = None
    assistant_turns: int = 0
    """Assistant messages already in the conversation: the index of the script turn to play."""
    choices: int = 1
    """Answers to give (text completions: one per prompt of the request)."""


class ToolCallPlan(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    arguments: str
    """The arguments as JSON text."""

    def fragments(self) -> list[str]:
        """The arguments streamed in (up to) three pieces that concatenate to `arguments`."""
        size = max(1, len(self.arguments) // 3)
        cuts = [0, size, 2 * size, len(self.arguments)]
        return [self.arguments[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """What one simulated generation says and reports: text (`words` joined by single spaces),
    then tool calls; `answer_tokens` + the reasoning words are the output tokens."""

    prompt_tokens: int
    words: list[str]
    reasoning: list[str]
    truncated: bool
    """`max_tokens` cut the answer below `SimulatorConfig.completion_tokens`."""
    tool_calls: list[ToolCallPlan] = msgspec.field(default_factory=list)
    answer_tokens: int = 0

    @property
    def completion_tokens(self) -> int:
        return self.answer_tokens + len(self.reasoning)

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def reasoning_text(self) -> str:
        return " ".join(self.reasoning)


def tool_arguments(schema: Any) -> dict[str, Any]:
    """Arguments that validate against a tool's JSON schema; a schema that declares no properties
    (and allows extra ones) gets `{"query": "lorem"}`, the simulator's historical answer."""
    if not isinstance(schema, dict) or not any(key in schema for key in ("properties", "required", "$ref", "allOf",
                                                                          "anyOf", "oneOf")):
        closed = isinstance(schema, dict) and schema.get("additionalProperties") is False
        return {} if closed else {"query": reply_words(1)[0]}
    value = example_value(schema)
    return value if isinstance(value, dict) else {}


def _planned_call(name: str, arguments: dict[str, Any] | None, call: Call) -> ToolCallPlan:
    if arguments is None:
        arguments = tool_arguments(call.tools.get(name))
    return ToolCallPlan(name=name, arguments=_encode(arguments).decode())


def _json_answer(output: OutputFormat, n: int) -> str:
    if output.kind == "json_schema" and output.schema is not None:
        return _encode(example_value(output.schema)).decode()
    return _encode({"answer": " ".join(reply_words(n))}).decode()


def plan_reply(call: Call, config: SimulatorConfig) -> Reply:
    """Decide the reply.

    A script turn (see `script`) is played as written: its text, then its tool calls; its output
    tokens are the words of the text plus those of each call's JSON arguments. Otherwise
    n = min(max_tokens, completion_tokens): the answer is n reply words, or a tool call of the
    chosen tool, or (for `response_format` / `output_config.format`) a JSON text, each reporting
    n output tokens. Reasoning words are `reply_words(reasoning_tokens)`, not capped by `max_tokens`.
    """
    reasoning = reply_words(config.reasoning_tokens)
    script = config.script
    if call.assistant_turns < len(script):
        turn = script[call.assistant_turns]
        text = turn.text or ""
        calls = [_planned_call(scripted.name, scripted.arguments, call) for scripted in turn.calls]
        tokens = count_words(text) + sum(count_words(planned.arguments) for planned in calls)
        return Reply(prompt_tokens=call.prompt_tokens, words=text.split(" ") if text else [], reasoning=reasoning,
                     truncated=False, tool_calls=calls, answer_tokens=tokens)
    n = config.completion_tokens
    if call.max_tokens is not None:
        n = max(0, min(call.max_tokens, n))
    truncated = n < config.completion_tokens
    if call.tool:
        return Reply(prompt_tokens=call.prompt_tokens, words=[], reasoning=reasoning, truncated=truncated,
                     tool_calls=[_planned_call(call.tool, None, call)], answer_tokens=n)
    if call.output_format is not None:
        words = _json_answer(call.output_format, n).split(" ")
    else:
        words = reply_words(n)
        if config.pad_bytes and words:
            words[-1] += "x" * config.pad_bytes
    return Reply(prompt_tokens=call.prompt_tokens, words=words, reasoning=reasoning, truncated=truncated,
                 answer_tokens=n)


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
