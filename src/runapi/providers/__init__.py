"""Upstream provider adapters, one module per protocol, behind `Provider`."""

from runapi.providers.anthropic import (
    FORWARDED_HEADERS,
    AnthropicProvider,
    NativeMessages,
)
from runapi.providers.base import Deployment, Provider, TextCompletions
from runapi.providers.openai_compat import OpenAICompatible

__all__ = [
    "FORWARDED_HEADERS",
    "AnthropicProvider",
    "Deployment",
    "NativeMessages",
    "OpenAICompatible",
    "Provider",
    "TextCompletions",
]
