"""Upstream provider adapters, one module per protocol, behind `Provider`."""

from runapi.providers.anthropic import AnthropicProvider, NativeMessages
from runapi.providers.base import (
    Deployment,
    Embeddings,
    EmbeddingsReply,
    Images,
    Provider,
    Timeouts,
    UpstreamChunk,
    UpstreamReply,
)
from runapi.providers.openai_compat import OpenAICompatible

__all__ = ["AnthropicProvider", "Deployment", "Embeddings", "EmbeddingsReply", "Images", "NativeMessages", "OpenAICompatible", "Provider", "Timeouts",
           "UpstreamChunk", "UpstreamReply"]
