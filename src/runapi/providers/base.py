"""The provider seam: what every upstream adapter implements, and the values it exchanges.

An adapter takes an OpenAI chat-completions request (a dict, the client's own fields kept)
and a `Deployment`, calls its upstream, and answers in OpenAI's shape with normalised
`Usage`. It raises only `runapi.errors.UpstreamError` subclasses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

import msgspec

from runapi.catalog import ProviderSpec
from runapi.protocols.openai import UpstreamChunk, UpstreamReply


class Deployment(msgspec.Struct, frozen=True):
    """One concrete route for a public model. `api_key` is a secret: never log or echo it."""

    model_id: str
    provider_name: str
    provider: ProviderSpec
    upstream_model: str
    weight: float = 1.0
    api_key: str = ""
    max_output: int = 0  # the public model's max output tokens (0: unknown); a default for max_tokens

    def __repr__(self) -> str:
        return f"Deployment({self.provider_name}:{self.upstream_model})"


class Provider(Protocol):
    async def complete(self, request: dict[str, Any], deployment: Deployment) -> UpstreamReply:
        """Call the upstream for one complete answer."""

    def stream(self, request: dict[str, Any], deployment: Deployment) -> AsyncIterator[list[UpstreamChunk]]:
        """Call the upstream and yield its chunks as they arrive: after each read, the chunks it
        completed, as one non-empty list (the relay sends them in one write). Closing the iterator
        cancels the call.

        The first list is only yielded once the upstream answered with success, so a
        caller may retry another deployment on any error raised before it.
        """


@runtime_checkable
class TextCompletions(Protocol):
    """An upstream that serves OpenAI's legacy text completions, `POST /completions` (optional ability:
    vLLM, Ollama, OpenAI's instruct models). Bodies and answers are OpenAI's `text_completion` shapes."""

    async def complete_text(self, request: dict[str, Any], deployment: Deployment) -> UpstreamReply:
        """One complete `text_completion` answer."""

    def stream_text(self, request: dict[str, Any], deployment: Deployment) -> AsyncIterator[list[UpstreamChunk]]:
        """`text_completion` chunks, listed per read as `Provider.stream` lists them (usage always asked)."""


class EmbeddingItem(msgspec.Struct):
    """One vector of an upstream's embeddings answer, as it was sent: its JSON (a list of numbers or
    base64 text) is kept undecoded, so a vector already in the client's encoding is relayed as bytes."""

    embedding: msgspec.Raw
    index: int | None = None


class EmbeddingsReply(msgspec.Struct):
    """An OpenAI embeddings `list`: its vectors, and its input token count if the upstream reported one."""

    data: list[EmbeddingItem]
    prompt_tokens: int | None


@runtime_checkable
class Embeddings(Protocol):
    """An upstream that serves OpenAI-shaped `POST /embeddings` (an optional provider ability)."""

    async def embed(self, request: dict[str, Any], deployment: Deployment) -> EmbeddingsReply:
        """Call the upstream's embeddings endpoint with `request` (its `model` replaced)."""


@runtime_checkable
class Images(Protocol):
    """An upstream that serves OpenAI-shaped `POST /images/generations` (an optional provider ability)."""

    async def generate_images(self, request: dict[str, Any], deployment: Deployment) -> list[dict[str, Any]]:
        """Call the upstream's image endpoint with `request` (its `model` replaced); the answer's `data`
        items (`url` or `b64_json` each)."""


class VideoJobState(msgspec.Struct, frozen=True):
    """Where an upstream video job stands: `state` processing, succeeded (with `video_url`, maybe
    `cover_url`) or failed (with `error`, the provider's reason)."""

    state: str  # processing | succeeded | failed
    video_url: str = ""
    cover_url: str = ""
    error: str = ""


@runtime_checkable
class VideoJobs(Protocol):
    """An upstream that generates videos asynchronously (an optional provider ability): submit a job,
    then poll it until it ends."""

    async def submit_video(self, request: dict[str, Any], deployment: Deployment, request_id: str) -> str:
        """Submit a job for `request` (the provider's video body, its `model` replaced), tagged with our
        `request_id`; the provider's job ID. Raises `UpstreamError` when the provider refused it."""

    async def video_status(self, job_id: str, deployment: Deployment) -> VideoJobState:
        """One poll of the job `job_id`."""
