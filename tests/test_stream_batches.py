"""Adapters list a stream's chunks per upstream read (`Provider.stream`): the events one read completed
come as one list, and a failure later in the same read (an error event, a malformed event) ends the
stream only after the chunks before it were handed over. Each upstream is a raw server on loopback
that writes its whole answer at once, so the client reads it in one piece."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from runapi.catalog import ProviderSpec
from runapi.errors import UpstreamError
from runapi.protocols.openai import UpstreamChunk
from runapi.providers.anthropic import AnthropicProvider
from runapi.providers.base import Deployment
from runapi.providers.openai_compat import OpenAICompatible
from runapi.transport import Timeouts
from runapi.transport.http_client import UpstreamClient
from tests.support.raw_servers import RawServer, answer, answering

REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}


def _sse(*events: bytes) -> bytes:
    return answer(b"".join(events), "content-type: text/event-stream")


def _openai_event(content: str) -> bytes:
    return b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"' + content.encode() + b'"}}]}\n\n'


def _anthropic_event(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


ANTHROPIC_OPENING = (
    _anthropic_event("message_start", b'{"type":"message_start","message":{"id":"msg_1","type":"message",'
                                      b'"role":"assistant","model":"claude","content":[],'
                                      b'"usage":{"input_tokens":5,"output_tokens":1}}}'),
    _anthropic_event("content_block_start", b'{"type":"content_block_start","index":0,'
                                            b'"content_block":{"type":"text","text":""}}'),
    _anthropic_event("content_block_delta", b'{"type":"content_block_delta","index":0,'
                                            b'"delta":{"type":"text_delta","text":"hello"}}'),
)


async def _lists(chunks: AsyncIterator[list[UpstreamChunk]]) -> tuple[list[list[UpstreamChunk]], Exception | None]:
    """Every list the stream yields, and the error that ended it (None if it ended cleanly)."""
    lists: list[list[UpstreamChunk]] = []
    try:
        async for batch in chunks:
            lists.append(batch)
    except UpstreamError as exc:
        return lists, exc
    return lists, None


def _deployment(port: int, protocol: str) -> Deployment:
    spec = ProviderSpec(base_url=f"http://127.0.0.1:{port}" + ("/v1" if protocol == "openai" else ""),
                        protocol=protocol)  # type: ignore[arg-type]
    return Deployment(model_id="m", provider_name="p", provider=spec, upstream_model="m")


async def _openai(body: bytes) -> tuple[list[list[UpstreamChunk]], Exception | None]:
    upstream = UpstreamClient()
    try:
        async with RawServer(answering(body)) as server:
            provider = OpenAICompatible(upstream, Timeouts())
            return await _lists(provider.stream(REQUEST, _deployment(server.port, "openai")))
    finally:
        await upstream.close()


async def test_events_of_one_read_come_as_one_list() -> None:
    lists, error = await _openai(_sse(_openai_event("a"), _openai_event("b"), b"data: [DONE]\n\n"))
    assert error is None
    assert [[chunk.content_parts for chunk in batch] for batch in lists] == [[1, 1]]
    assert b'"content":"b"' in lists[0][1].payload


@pytest.mark.parametrize("failure", [b'event: error\ndata: {"error":{"message":"Overloaded"}}\n\n',
                                     b'data: {"id":"c1","choices":[{"delta":{"content":"\n\n'],
                         ids=["error event", "malformed event"])
async def test_a_failure_later_in_the_read_comes_after_the_chunks_before_it(failure: bytes) -> None:
    lists, error = await _openai(_sse(_openai_event("a"), _openai_event("b"), failure, _openai_event("c")))
    assert [len(batch) for batch in lists] == [2]
    assert isinstance(error, UpstreamError)
    assert ("Overloaded" if b"error" in failure else "malformed") in str(error)


async def _anthropic(body: bytes, native: bool) -> tuple[list[list[UpstreamChunk]], Exception | None]:
    upstream = UpstreamClient()
    try:
        async with RawServer(answering(body)) as server:
            provider = AnthropicProvider(upstream, Timeouts())
            deployment = _deployment(server.port, "anthropic")
            if native:
                return await _lists(provider.stream_native(REQUEST, deployment, {}))
            return await _lists(provider.stream(REQUEST, deployment))
    finally:
        await upstream.close()


@pytest.mark.parametrize("native", [False, True], ids=["as chat chunks", "native"])
async def test_anthropic_chunks_before_an_error_event_in_the_same_read_are_handed_over(native: bool) -> None:
    error_event = _anthropic_event("error", b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')
    lists, error = await _anthropic(_sse(*ANTHROPIC_OPENING, error_event), native)
    assert len(lists) == 1 and sum(chunk.content_parts for chunk in lists[0]) == 1
    assert isinstance(error, UpstreamError) and "Overloaded" in str(error)


@pytest.mark.parametrize("native", [False, True], ids=["as chat chunks", "native"])
async def test_anthropic_chunks_before_a_malformed_event_in_the_same_read_are_handed_over(native: bool) -> None:
    # a native stream is relayed as is: only the events carrying usage are parsed there
    malformed = _anthropic_event("message_delta" if native else "content_block_delta", b'{"type":"x","delta":{"')
    lists, error = await _anthropic(_sse(*ANTHROPIC_OPENING, malformed), native)
    assert len(lists) == 1 and sum(chunk.content_parts for chunk in lists[0]) == 1
    assert isinstance(error, UpstreamError) and "malformed" in str(error)
