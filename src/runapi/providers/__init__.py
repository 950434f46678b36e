"""Upstream provider adapters, one module per protocol, behind `Provider`."""

from runapi.providers.base import Deployment, Provider, Timeouts, UpstreamChunk, UpstreamReply
from runapi.providers.openai_compat import OpenAICompatible

__all__ = ["Deployment", "OpenAICompatible", "Provider", "Timeouts", "UpstreamChunk", "UpstreamReply"]
