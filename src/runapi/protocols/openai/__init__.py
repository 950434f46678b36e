"""OpenAI's wire protocol: chat-completions requests, decoded and typed, and the answers adapters
hand the pipeline in its shape."""

from runapi.protocols.openai.answers import UpstreamChunk, UpstreamReply
from runapi.protocols.openai.chat_request import (
    ChatRequest,
    ImagePart,
    Message,
    TextPart,
    decode_chat_request,
    decode_model_body,
    decode_typed_body,
    prompt_bytes,
)
from runapi.protocols.openai.completion_request import (
    CompletionRequest,
    decode_completion_request,
)

__all__ = [
    "ChatRequest",
    "CompletionRequest",
    "ImagePart",
    "Message",
    "TextPart",
    "UpstreamChunk",
    "UpstreamReply",
    "decode_chat_request",
    "decode_completion_request",
    "decode_model_body",
    "decode_typed_body",
    "prompt_bytes",
]
