"""OpenAI legacy text completions (`POST /v1/completions`, JSON and SSE), as the simulator speaks it.

`prompt` may be a string, a list of strings, a list of token ids or a list of those lists. Each
prompt gets one choice (the same simulated reply); prompt tokens are the words of a text prompt
(a token-id prompt counts its ids), and usage sums over the prompts.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import msgspec

from .config import SimulatorConfig
from .generation import Call, Reply, StreamScript
from .openai_protocol import OpenAIChat
from .tokens import chunk_texts, count_words

__all__ = ["OpenAICompletions"]

_encode = msgspec.json.Encoder().encode
_CHAT = OpenAIChat()  # the same error shapes


class _StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class _CompletionRequest(msgspec.Struct, kw_only=True):
    prompt: str | list[str | int | list[int]]
    model: str = ""
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    max_tokens: int | None = None


def _prompts(prompt: str | list[str | int | list[int]]) -> list[int]:
    """Tokens of each prompt of the request."""
    if isinstance(prompt, str):
        return [count_words(prompt)]
    if prompt and all(isinstance(item, int) for item in prompt):
        return [len(prompt)]
    return [count_words(item) if isinstance(item, str) else 1 if isinstance(item, int) else len(item)
            for item in prompt] or [0]


class OpenAICompletions:
    """`POST /v1/completions`: `text_completion` JSON, SSE chunks, usage and error shapes."""

    malformed_json = b'{"id": "cmpl-sim", "object": "text_completion", "choices": [{"text": "'

    def parse(self, raw: dict[str, Any]) -> Call:
        request = msgspec.convert(raw, _CompletionRequest)
        counts = _prompts(request.prompt)
        options = request.stream_options
        return Call(model=request.model, stream=bool(request.stream), prompt_tokens=sum(counts),
                    max_tokens=request.max_tokens, include_usage=bool(options and options.include_usage),
                    choices=len(counts))

    def _usage(self, reply: Reply, call: Call, config: SimulatorConfig) -> dict[str, Any]:
        completion = reply.answer_tokens * call.choices  # no reasoning text in a text completion
        return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": completion,
                "total_tokens": reply.prompt_tokens + completion,
                "prompt_tokens_details": {"cached_tokens": min(config.cached_tokens, reply.prompt_tokens)},
                "completion_tokens_details": {"reasoning_tokens": 0}}

    def completion(self, reply: Reply, call: Call, config: SimulatorConfig) -> bytes:
        finish = "length" if reply.truncated else "stop"
        choices = [{"text": reply.text, "index": i, "logprobs": None, "finish_reason": finish}
                   for i in range(call.choices)]
        return _encode({"id": _completion_id(), "object": "text_completion", "created": int(time.time()),
                        "model": call.model, "choices": choices, "usage": self._usage(reply, call, config)})

    def stream(self, reply: Reply, call: Call, config: SimulatorConfig) -> StreamScript:
        include_usage = call.include_usage and config.honour_include_usage
        head = b'data: {"id":"%s","object":"text_completion","created":%d,"model":%s,"choices":[' % (
            _completion_id().encode(), int(time.time()), _encode(call.model))
        tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"

        def chunk(index: int, text: str, finish: bytes = b"null") -> bytes:
            return (head + b'{"text":' + _encode(text) + b',"index":%d,"logprobs":null,"finish_reason":' % index
                    + finish + b"}]" + tail)

        script = StreamScript(malformed=head + b'{"text":"\n\n',
                              error=b"data: " + self.error(500, "The server had an error (simulated).") + b"\n\n")
        finish = b'"length"' if reply.truncated else b'"stop"'
        for index in range(call.choices):
            for text in chunk_texts(reply.words, config.chunks):
                script.add(chunk(index, text), paced=True)
            if index == 0:
                script.midpoint = len(script.frames) // 2 + 1
            script.add(chunk(index, "", finish))
        if include_usage:
            script.add(head + b'],"usage":' + _encode(self._usage(reply, call, config)) + b"}\n\n")
        script.add(b"data: [DONE]\n\n")
        return script

    def error(self, status: int, message: str) -> bytes:
        return _CHAT.error(status, message)


def _completion_id() -> str:
    return "cmpl-" + secrets.token_hex(12)
