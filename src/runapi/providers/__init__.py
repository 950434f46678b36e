"""Upstream provider adapters, one module per protocol, behind `Provider`."""

from runapi.providers.anthropic import (
    FORWARDED_HEADERS,
    AnthropicProvider,
    NativeMessages,
)
from runapi.providers.base import (
    Deployment,
    Embeddings,
    EmbeddingItem,
    EmbeddingsReply,
    Images,
    Provider,
    TextCompletions,
    VideoJobs,
    VideoJobState,
)
from runapi.providers.openai_compat import OpenAICompatible

__all__ = [
    "FORWARDED_HEADERS",
    "AnthropicProvider",
    "Deployment",
    "Embeddings",
    "EmbeddingItem",
    "EmbeddingsReply",
    "Images",
    "NativeMessages",
    "OpenAICompatible",
    "Provider",
    "TextCompletions",
    "VideoJobState",
    "VideoJobs",
]
