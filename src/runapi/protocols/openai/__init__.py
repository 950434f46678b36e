"""OpenAI's wire protocol: chat-completions requests, decoded and typed, and the answers adapters
hand the pipeline in its shape."""

from runapi.protocols.openai.answers import UpstreamChunk, UpstreamReply
from runapi.protocols.openai.chat_request import (
    ChatRequest,
    ImagePart,
    Message,
    TextPart,
    decode_chat_request,
    decode_typed_body,
    prompt_bytes,
)

__all__ = [
    "ChatRequest",
    "ImagePart",
    "Message",
    "TextPart",
    "UpstreamChunk",
    "UpstreamReply",
    "decode_chat_request",
    "decode_typed_body",
    "prompt_bytes",
]
