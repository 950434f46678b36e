"""Anthropic Messages upstreams (`POST {base_url}/v1/messages`), over the pooled upstream client.

`complete` and `stream` speak OpenAI chat completions to the pipeline and translate with
`anthropic_translate`. The `NativeMessages` ability (`complete_native`, `stream_native`,
`count_tokens`) relays a client's own Messages body, so `/v1/messages` reaches Anthropic
without a round trip through the OpenAI shape, to `/v1/messages?beta=true` when the client
called that. Headers sent: `x-api-key`, `anthropic-version` (the client's when given, else
2023-06-01) and the client's `anthropic-beta`. Mid-conversation `role: "system"` messages are
relayed as they are; an upstream model that refuses them (a 400 naming `system`; models before
Claude Opus 4.8 do) gets them folded into `system`, then and on every later call.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import msgspec

from runapi.errors import (
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from runapi.protocols.anthropic import (
    ANTHROPIC_VERSION,
    MessagesToChatStream,
    NativeStreamMeter,
    fold_system_messages,
    from_messages_reply,
    messages_usage,
    to_messages_request,
    upstream_error_message,
)
from runapi.protocols.openai import UpstreamChunk, UpstreamReply
from runapi.providers.base import Deployment
from runapi.transport import (
    Timeouts,
    UpstreamClient,
    UpstreamResponse,
    frame,
    iter_sse_batches,
    post_to_upstream,
    read_upstream_body,
)

FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
"""Client headers relayed to Anthropic upstreams."""

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _until_failure(batch: list[tuple[str, bytes]], feed: Callable[[str, bytes], list[UpstreamChunk]]
                   ) -> tuple[list[UpstreamChunk], UpstreamError | None]:
    """The chunks `feed` makes of a read's events, up to the first event it refuses (malformed), and that
    refusal: the stream ends with it, after the chunks before it."""
    chunks: list[UpstreamChunk] = []
    for name, data in batch:
        try:
            chunks += feed(name, data)
        except UpstreamError as exc:
            return chunks, exc
    return chunks, None


@runtime_checkable
class NativeMessages(Protocol):
    """An upstream that takes Anthropic Messages bodies as they are (optional provider ability).
    `beta`: the client called `?beta=true` (Anthropic's beta surface)."""

    async def complete_native(self, body: dict[str, Any], deployment: Deployment,
                              headers: Mapping[str, str], *, beta: bool = False) -> UpstreamReply:
        """One complete answer; `body` of the reply is the upstream's Messages JSON."""

    def stream_native(self, body: dict[str, Any], deployment: Deployment,
                      headers: Mapping[str, str], *, beta: bool = False) -> AsyncIterator[list[UpstreamChunk]]:
        """Messages SSE events, each chunk's payload one framed event; usage on `message_delta`.
        Listed per read, as `Provider.stream` lists chunks."""

    async def count_tokens(self, body: dict[str, Any], deployment: Deployment, headers: Mapping[str, str], *,
                           beta: bool = False) -> int:
        """The upstream's `input_tokens` count for a Messages body."""


def _refuses_system_messages(error: UpstreamRejected, body: dict[str, Any]) -> bool:
    return error.upstream_status == 400 and "system" in error.message.lower() and any(
        message.get("role") == "system" for message in body.get("messages") or () if isinstance(message, dict))


class AnthropicProvider:
    """The Anthropic Messages protocol; `deployment.provider.base_url` is the host, e.g. https://api.anthropic.com."""

    def __init__(self, client: UpstreamClient, timeouts: Timeouts) -> None:
        self._client = client
        self._timeouts = timeouts
        self._folds_system: set[tuple[str, str]] = set()  # (base URL, upstream model) refusing system messages

    def _headers(self, deployment: Deployment, client: Mapping[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION,
                   **deployment.provider.headers}
        for name in FORWARDED_HEADERS:
            if client.get(name):
                headers[name] = client[name]
        if deployment.api_key:
            headers["x-api-key"] = deployment.api_key
        return headers

    def _url(self, deployment: Deployment, path: str = "/v1/messages", beta: bool = False) -> str:
        return deployment.provider.base_url.rstrip("/") + path + ("?beta=true" if beta else "")

    async def _post_native(self, body: dict[str, Any], deployment: Deployment, headers: Mapping[str, str],
                           path: str, beta: bool) -> UpstreamResponse:
        """POST a client's Messages body; system messages are folded for a model known to refuse them,
        and once more when the upstream refuses them now."""
        model = (deployment.provider.base_url, deployment.upstream_model)
        sent = fold_system_messages(body) if model in self._folds_system else body
        url, sent_headers = self._url(deployment, path, beta), self._headers(deployment, headers)
        try:
            return await self._post(url, sent_headers, _encode(sent))
        except UpstreamRejected as exc:
            if not _refuses_system_messages(exc, sent):
                raise
        self._folds_system.add(model)
        return await self._post(url, sent_headers, _encode(fold_system_messages(sent)))

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> UpstreamResponse:
        return await post_to_upstream(self._client, self._timeouts, url, headers, body)

    async def _read_json(self, response: UpstreamResponse) -> dict[str, Any]:
        raw = await read_upstream_body(response, self._timeouts)
        try:
            data = _decode(raw)
        except msgspec.DecodeError as exc:
            raise UpstreamUnavailable("the upstream sent a malformed answer") from exc
        if not isinstance(data, dict) or data.get("type") != "message":
            raise UpstreamUnavailable("the upstream answer is not a message")
        return data

    async def _events(self, response: UpstreamResponse) -> AsyncGenerator[list[tuple[str, bytes]], None]:
        """(event name, data) pairs per read until `message_stop`; transport failures become `UpstreamError`s."""
        batches = iter_sse_batches(response.chunks(), self._timeouts.max_response_bytes)
        try:
            async for events in batches:
                batch: list[tuple[str, bytes]] = []
                for event in events:
                    name = event.event or "message"
                    if name == "error":
                        if batch:
                            yield batch
                        message = upstream_error_message(event.data) or "unknown error"
                        raise UpstreamError(f"the upstream reported an error mid-stream: {message}")
                    batch.append((name, event.data))
                    if name == "message_stop":
                        response.release_after_end()
                        yield batch
                        return
                if batch:
                    yield batch
            raise UpstreamError("the upstream stream ended before message_stop")
        except TimeoutError as exc:
            raise UpstreamTimeout("the upstream stream stalled") from exc
        except OSError as exc:  # after TimeoutError, which is one
            raise UpstreamError(f"the upstream stream was interrupted: {type(exc).__name__}") from exc
        finally:
            await batches.aclose()  # closed here, not by a finalizer task once it is collected
            response.release()

    # -- the Provider protocol: OpenAI chat completions in and out -------------------------------

    async def complete(self, request: dict[str, Any], deployment: Deployment) -> UpstreamReply:
        body = to_messages_request(request, deployment.upstream_model, deployment.max_output)
        body.pop("stream", None)
        response = await self._post(self._url(deployment), self._headers(deployment, {}), _encode(body))
        message = await self._read_json(response)
        reply, usage = from_messages_reply(message, int(time.time()))
        return UpstreamReply(body=reply, usage=usage, upstream_id=str(message.get("id", "")))

    async def stream(self, request: dict[str, Any], deployment: Deployment) -> AsyncIterator[list[UpstreamChunk]]:
        body = to_messages_request(request, deployment.upstream_model, deployment.max_output)
        body["stream"] = True
        response = await self._post(self._url(deployment), self._headers(deployment, {}), _encode(body))
        translator = MessagesToChatStream(created=int(time.time()))
        async with contextlib.aclosing(self._events(response)) as batches:
            async for batch in batches:
                chunks, error = _until_failure(batch, translator.feed)
                if chunks:
                    yield chunks
                if error is not None:
                    raise error

    # -- NativeMessages: Anthropic bodies relayed as they are -------------------------------------

    async def complete_native(self, body: dict[str, Any], deployment: Deployment,
                              headers: Mapping[str, str], *, beta: bool = False) -> UpstreamReply:
        sent = {**body, "model": deployment.upstream_model}
        sent.pop("stream", None)
        response = await self._post_native(sent, deployment, headers, "/v1/messages", beta)
        message = await self._read_json(response)
        return UpstreamReply(body=message, usage=messages_usage(message.get("usage")),
                             upstream_id=str(message.get("id", "")))

    async def stream_native(self, body: dict[str, Any], deployment: Deployment,
                            headers: Mapping[str, str], *, beta: bool = False) -> AsyncIterator[list[UpstreamChunk]]:
        sent = {**body, "model": deployment.upstream_model, "stream": True}
        response = await self._post_native(sent, deployment, headers, "/v1/messages", beta)
        meter = NativeStreamMeter()

        def relayed(name: str, data: bytes) -> list[UpstreamChunk]:
            usage, parts = meter.feed(name, data)
            return [UpstreamChunk(payload=frame(data, name), usage=usage, content_parts=parts)]

        async with contextlib.aclosing(self._events(response)) as batches:
            async for batch in batches:
                chunks, error = _until_failure(batch, relayed)
                if chunks:
                    yield chunks
                if error is not None:
                    raise error

    async def count_tokens(self, body: dict[str, Any], deployment: Deployment, headers: Mapping[str, str], *,
                           beta: bool = False) -> int:
        sent = {**body, "model": deployment.upstream_model}
        response = await self._post_native(sent, deployment, headers, "/v1/messages/count_tokens", beta)
        raw = await read_upstream_body(response, self._timeouts)
        try:
            count = _decode(raw).get("input_tokens")
        except (msgspec.DecodeError, AttributeError) as exc:
            raise UpstreamUnavailable("the upstream sent a malformed token count") from exc
        if not isinstance(count, int):
            raise UpstreamUnavailable("the upstream sent no token count")
        return count
