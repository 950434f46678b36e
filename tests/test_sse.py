"""The SSE parser handles arbitrary splits, comments, CRLF and multi-line data, and lists events per read."""

import pytest

from runapi.transport.sse import iter_sse_batches, parse_sse_event

STREAM = b'data: {"a":1}\n\n: keep-alive\n\nevent: message_start\ndata: {"b":2}\n\ndata: [DONE]\n\n'


async def _collect(chunks: list[bytes]) -> list[tuple[str, bytes]]:
    async def gen():  # type: ignore[no-untyped-def]
        for chunk in chunks:
            yield chunk

    return [(e.event, e.data) async for events in iter_sse_batches(gen()) for e in events]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
async def test_events_survive_any_split(size: int) -> None:
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert await _collect(chunks) == [("", b'{"a":1}'), ("message_start", b'{"b":2}'), ("", b"[DONE]")]


async def test_crlf_framing() -> None:
    assert await _collect([STREAM.replace(b"\n", b"\r\n")]) == await _collect([STREAM])


def test_multiline_data_joins_with_newlines() -> None:
    event = parse_sse_event(b"data: one\ndata: two")
    assert event is not None and event.data == b"one\ntwo"


def test_comment_only_block_is_no_event() -> None:
    assert parse_sse_event(b": ping") is None


async def test_events_are_listed_per_read() -> None:
    """Events completed by one read come as one list; an unfinished event waits for the read that ends it."""
    async def gen():  # type: ignore[no-untyped-def]
        yield b'data: {"a":1}\n\ndata: {"a":2}\n\ndata: {"a'
        yield b'":3}\n\n'
        yield b"event: ping\ndata: x\n\n: comment\n\n"

    batches = [[(e.event, e.data) for e in events] async for events in iter_sse_batches(gen())]
    assert batches == [[("", b'{"a":1}'), ("", b'{"a":2}')], [("", b'{"a":3}')], [("ping", b"x")]]
