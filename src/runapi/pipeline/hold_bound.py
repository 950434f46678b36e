"""The most a call can consume, in tokens no answer can exceed: what its credit hold covers.

Issue 20.8: the hold's prompt estimate (UTF-8 bytes / 3) was not an upper bound ("a a a" runs
about 2 bytes a token), an image counted a flat ~1,000 tokens, and reasoning beyond `max_tokens`
was not held at all; whatever a call cost beyond its hold and the free balance was given away.
Now, per model that may answer:

- prompt: a byte-level BPE token is at least one byte, so the prompt's UTF-8 bytes (its text, tool
  calls, tool definitions and response schema, with 12 bytes of framing per message, plus the
  providers' own tool prompt) bound its text tokens; each
  image adds the model's `image_tokens` (the provider's formula at the largest image it accepts);
  an audio clip or a file has no such bound, so a prompt with one is held at the model's context
  length. No prompt exceeds the context length (the upstream refuses it, and a refusal is free);
- output: `max_tokens` (or the model's maximum output) per choice where the upstream counts
  reasoning inside it, else the model's `output_ceiling`.

Pure functions; the rate limiter keeps its own, smaller estimate (bytes / 3) for tokens per minute.
"""

from __future__ import annotations

import msgspec

from runapi.catalog import ModelEntry
from runapi.money import Usage
from runapi.pipeline.chat_request import ChatRequest, ImagePart, TextPart

__all__ = ["PromptShape", "hold_usage", "prompt_shape"]

FRAMING_BYTES = 12  # per message: role and delimiters (a handful of tokens, each at least one byte)
# With tools, providers add a system prompt of their own (Anthropic documents 159 to 530 tokens).
TOOLS_FRAMING_TOKENS = 600


class PromptShape(msgspec.Struct, frozen=True):
    """What bounds a prompt's tokens (its text bytes, its images, parts with no bound), and the bytes
    the documented estimate (`chat_request.prompt_bytes`) counts, found in the same pass."""

    text_bytes: int
    images: int
    unbounded: int  # audio clips and files
    estimate_bytes: int


def prompt_shape(request: ChatRequest) -> PromptShape:
    text = images = unbounded = estimate = 0
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            size = len(content.encode())
            text += size
            estimate += size
        elif content:
            for part in content:
                if isinstance(part, TextPart):
                    size = len(part.text.encode())
                    text += size
                    estimate += size
                else:
                    estimate += 3000  # as `prompt_bytes` counts media
                    if isinstance(part, ImagePart):
                        images += 1
                    else:
                        unbounded += 1
        for call in message.tool_calls or ():
            size = len(call.function.arguments.encode()) + len(call.function.name)
            estimate += size
            text += size + len(call.function.name.encode()) + len(call.id.encode())
        text += len((message.name or "").encode()) + len((message.reasoning_content or "").encode()) + FRAMING_BYTES
        estimate += FRAMING_BYTES
    if request.tools:
        size = len(msgspec.json.encode(request.tools))  # encoded once, for both counts (agents send ~50 KB)
        text += size
        estimate += size
    for extra in (request.functions, request.response_format):
        if extra:
            text += len(msgspec.json.encode(extra))
    if request.tools or request.functions:
        text += TOOLS_FRAMING_TOKENS
    return PromptShape(text, images, unbounded, estimate)


def hold_usage(request: ChatRequest, shape: PromptShape, entry: ModelEntry) -> Usage:
    """Input and output tokens that `entry` cannot exceed answering `request`."""
    if shape.unbounded:
        prompt = entry.context_length
    else:
        prompt = min(shape.text_bytes + shape.images * entry.image_tokens, entry.context_length)
    if entry.output_ceiling:
        output = entry.output_ceiling * (request.n or 1)
    else:
        output = request.output_limit(entry.max_output)
    return Usage(input_tokens=prompt, output_tokens=output)
