"""OpenAI-compatible upstreams: Z.ai GLM, OpenAI, DeepSeek, vLLM, Ollama, any `base_url`.

The request passes through untouched except `model` (the deployment's upstream name) and,
for streams, `stream_options.include_usage` (always asked, so usage is exact). Unknown
fields, GLM's `thinking` and `tool_stream` included, reach the upstream as sent.
GLM streams reasoning in `delta.reasoning_content`; it is relayed and billed as output.
Legacy text completions (`TextCompletions`: `POST /completions`) go the same way; whether a
model's upstream serves them is the catalog's `text_completions` flag.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from runapi.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from runapi.money import Usage
from runapi.protocols.openai import UpstreamChunk, UpstreamReply
from runapi.providers import zai_videos
from runapi.providers.base import Deployment, EmbeddingItem, EmbeddingsReply, VideoJobState
from runapi.transport import (
    Timeouts,
    UpstreamClient,
    error_message,
    get_from_upstream,
    iter_sse_batches,
    post_to_upstream,
    read_upstream_body,
)

_encode = msgspec.json.Encoder().encode


class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = 0


class _CompletionDetails(msgspec.Struct):
    reasoning_tokens: int | None = 0


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None

    def normalise(self) -> Usage:
        cached = (self.prompt_tokens_details.cached_tokens or 0) if self.prompt_tokens_details else 0
        reasoning = (self.completion_tokens_details.reasoning_tokens or 0) if self.completion_tokens_details else 0
        return Usage.from_openai(self.prompt_tokens, self.completion_tokens, cached, reasoning)


class _FunctionDelta(msgspec.Struct):
    arguments: str | None = None


class _ToolCallDelta(msgspec.Struct):
    function: _FunctionDelta | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    text: str | None = None  # a text completion's chunk


class _Chunk(msgspec.Struct):
    id: str = ""
    choices: list[_Choice] = []
    usage: _Usage | None = None
    error: dict[str, Any] | None = None


class _Reply(msgspec.Struct):
    id: str = ""
    usage: _Usage | None = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode
_decode_any = msgspec.json.Decoder().decode


def _count_parts(chunk: _Chunk) -> int:
    parts = 0
    for choice in chunk.choices:
        if choice.text:
            parts += 1
        delta = choice.delta
        if delta is None:
            continue
        if delta.content:
            parts += 1
        if delta.reasoning_content:
            parts += 1
        for call in delta.tool_calls or ():
            if call.function and call.function.arguments:
                parts += 1
    return parts


def parse_chunk(data: bytes) -> UpstreamChunk:
    """An OpenAI stream chunk → `UpstreamChunk` (pure). Raises `UpstreamError` on an error event."""
    try:
        chunk = _decode_chunk(data)
    except msgspec.DecodeError as exc:
        raise UpstreamError("the upstream sent a malformed stream event") from exc
    if chunk.error is not None:
        message = chunk.error.get("message") if isinstance(chunk.error, dict) else None
        raise UpstreamError(f"the upstream reported an error mid-stream: {message or 'unknown error'}")
    return UpstreamChunk(
        payload=data,
        usage=chunk.usage.normalise() if chunk.usage is not None else None,
        usage_only=chunk.usage is not None and not chunk.choices,
        content_parts=_count_parts(chunk),
        upstream_id=chunk.id,
    )


class _EmbeddingsUsage(msgspec.Struct):
    prompt_tokens: int | None = None


class _EmbeddingsAnswer(msgspec.Struct):
    """What the gateway reads of an upstream's embeddings answer (the vectors stay undecoded)."""

    data: list[EmbeddingItem]
    usage: _EmbeddingsUsage | None = None


_decode_embeddings = msgspec.json.Decoder(_EmbeddingsAnswer).decode


class OpenAICompatible:
    """The OpenAI chat-completions protocol (and legacy text completions) over the pooled upstream client."""

    def __init__(self, client: UpstreamClient, timeouts: Timeouts) -> None:
        self._client = client
        self._timeouts = timeouts

    def _target(self, request: dict[str, Any], deployment: Deployment, path: str = "/chat/completions",
                ) -> tuple[str, dict[str, str], dict[str, Any]]:
        url = deployment.provider.base_url.rstrip("/") + path
        headers = {"content-type": "application/json", **deployment.provider.headers}
        if deployment.api_key:
            headers["authorization"] = f"Bearer {deployment.api_key}"
        body = dict(request)
        body["model"] = deployment.upstream_model
        return url, headers, body

    async def complete(self, request: dict[str, Any], deployment: Deployment) -> UpstreamReply:
        return await self._complete(request, deployment, "/chat/completions")

    async def complete_text(self, request: dict[str, Any], deployment: Deployment) -> UpstreamReply:
        return await self._complete(request, deployment, "/completions")

    def stream(self, request: dict[str, Any], deployment: Deployment) -> AsyncIterator[list[UpstreamChunk]]:
        return self._stream(request, deployment, "/chat/completions")

    def stream_text(self, request: dict[str, Any], deployment: Deployment) -> AsyncIterator[list[UpstreamChunk]]:
        return self._stream(request, deployment, "/completions")

    async def _complete(self, request: dict[str, Any], deployment: Deployment, path: str) -> UpstreamReply:
        url, headers, body = self._target(request, deployment, path)
        body.pop("stream_options", None)
        body["stream"] = False
        response = await post_to_upstream(self._client, self._timeouts, url, headers, _encode(body))
        raw = await read_upstream_body(response, self._timeouts)
        try:
            data = _decode_any(raw)
            if not isinstance(data, dict) or "choices" not in data:
                raise UpstreamUnavailable("the upstream answer has no choices")
            meta = msgspec.convert(data, _Reply)  # from the decoded dict: the body is parsed once
        except msgspec.DecodeError as exc:  # ValidationError (a wrong id or usage) is one
            raise UpstreamUnavailable("the upstream sent a malformed answer") from exc
        return UpstreamReply(body=data, usage=meta.usage.normalise() if meta.usage else None, upstream_id=meta.id)

    async def embed(self, request: dict[str, Any], deployment: Deployment) -> EmbeddingsReply:
        """`POST {base_url}/embeddings` (OpenAI's and Z.ai's shape): the answer's `data` list and usage."""
        url, headers, body = self._target(request, deployment, "/embeddings")
        response = await post_to_upstream(self._client, self._timeouts, url, headers, _encode(body))
        raw = await read_upstream_body(response, self._timeouts)
        try:
            answer = _decode_embeddings(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamUnavailable("the upstream sent a malformed embeddings answer") from exc
        return EmbeddingsReply(data=answer.data, prompt_tokens=answer.usage.prompt_tokens if answer.usage else None)

    async def generate_images(self, request: dict[str, Any], deployment: Deployment) -> list[dict[str, Any]]:
        """`POST {base_url}/images/generations` (OpenAI's and Z.ai's shape). `response_format` is not sent:
        the upstream answers in its default (a URL, or base64 for gpt-image models; Z.ai knows only URLs)
        and the gateway answers in the client's format from its own copy."""
        url, headers, body = self._target(request, deployment, "/images/generations")
        body.pop("response_format", None)
        response = await post_to_upstream(self._client, self._timeouts, url, headers, _encode(body))
        raw = await read_upstream_body(response, self._timeouts)
        try:
            data = _decode_any(raw)
        except msgspec.DecodeError as exc:
            raise UpstreamUnavailable("the upstream sent a malformed images answer") from exc
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or not items or not all(isinstance(item, dict) for item in items):
            raise UpstreamUnavailable("the upstream images answer has no data list")
        return items

    async def submit_video(self, request: dict[str, Any], deployment: Deployment, request_id: str) -> str:
        """Submit a video job in Z.ai's asynchronous shape (`zai_videos`); the provider's job ID."""
        url, headers, _ = self._target({}, deployment, zai_videos.SUBMIT_PATH)
        body = zai_videos.submit_body(request, deployment.upstream_model, request_id)
        response = await post_to_upstream(self._client, self._timeouts, url, headers, _encode(body))
        return zai_videos.parse_submission(await read_upstream_body(response, self._timeouts))

    async def video_status(self, job_id: str, deployment: Deployment) -> VideoJobState:
        """One poll of a Z.ai video job (`GET /async-result/{id}`)."""
        url, headers, _ = self._target({}, deployment, zai_videos.result_path(job_id))
        headers.pop("content-type", None)
        response = await get_from_upstream(self._client, self._timeouts, url, headers)
        return zai_videos.parse_job_state(await read_upstream_body(response, self._timeouts))

    async def _stream(self, request: dict[str, Any], deployment: Deployment, path: str,
                      ) -> AsyncIterator[list[UpstreamChunk]]:
        url, headers, body = self._target(request, deployment, path)
        body["stream"] = True
        options = dict(body.get("stream_options") or {})
        options["include_usage"] = True
        body["stream_options"] = options
        response = await post_to_upstream(self._client, self._timeouts, url, headers, _encode(body))
        batches = iter_sse_batches(response.chunks(), self._timeouts.max_response_bytes)
        try:
            async for events in batches:
                chunks: list[UpstreamChunk] = []
                end: UpstreamError | None = None  # after the chunks before it are relayed
                for event in events:
                    if event.data == b"[DONE]":
                        response.release_after_end()
                        if chunks:
                            yield chunks
                        return
                    if event.event == "error":
                        end = UpstreamError(f"the upstream reported an error mid-stream: {error_message(event.data)}")
                        break
                    try:
                        chunks.append(parse_chunk(event.data))
                    except UpstreamError as exc:
                        end = exc
                        break
                if chunks:
                    yield chunks
                if end is not None:
                    raise end
            raise UpstreamError("the upstream stream ended before [DONE]")
        except TimeoutError as exc:
            raise UpstreamTimeout("the upstream stream stalled") from exc
        except OSError as exc:  # after TimeoutError, which is one
            raise UpstreamError(f"the upstream stream was interrupted: {type(exc).__name__}") from exc
        finally:
            await batches.aclose()  # closed here, not by a finalizer task once it is collected
            response.release()
