"""OpenAI's legacy text-completions request (`POST /v1/completions`): the fields the gateway reads,
and its view as a chat request for the hold and the limits (pure)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from runapi.protocols.openai.chat_request import (
    ChatRequest,
    Message,
    PositiveInt,
    StreamOptions,
    decode_typed_body,
)

# A string, strings, token ids, or lists of token ids (msgspec takes one list type per union).
Prompt = str | list[str | int | list[int]]


class CompletionRequest(msgspec.Struct):
    """The fields of a text-completions body the gateway reads; the rest passes through."""

    model: Annotated[str, Meta(min_length=1)]
    prompt: Prompt
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    best_of: Annotated[int, Meta(ge=1, le=128)] | None = None
    suffix: str | None = None

    def prompts(self) -> list[str]:
        """Each prompt as text; a token-id prompt as one byte per token (a token is at least a byte)."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if prompt and all(isinstance(item, int) for item in prompt):
            return ["x" * len(prompt)]
        return [item if isinstance(item, str) else "x" * (1 if isinstance(item, int) else len(item))
                for item in prompt] or [""]

    def chat_view(self) -> ChatRequest:
        """The request as the chat pipeline's hold and limits read it: one message per prompt (and the
        suffix), with as many choices as the upstream generates (`best_of` or `n`, per prompt)."""
        texts = self.prompts() + ([self.suffix] if self.suffix else [])
        per_prompt = max(self.n or 1, self.best_of or 1)
        return ChatRequest(model=self.model, messages=[Message(role="user", content=text) for text in texts],
                           stream=self.stream, stream_options=self.stream_options, max_tokens=self.max_tokens,
                           n=per_prompt * len(self.prompts()))


_WHOLE_NUMBER_FIELDS = ("max_tokens", "n", "best_of")


def decode_completion_request(body: bytes) -> tuple[CompletionRequest, dict[str, Any]]:
    """Validate a text-completions body. Raises `InvalidRequest` naming the bad field."""
    return decode_typed_body(body, CompletionRequest, whole_numbers=_WHOLE_NUMBER_FIELDS)
