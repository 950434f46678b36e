"""The SSE parser handles arbitrary splits, comments, CRLF and multi-line data."""

import pytest

from runapi.providers.sse import iter_sse_events, parse_sse_event

STREAM = b'data: {"a":1}\n\n: keep-alive\n\nevent: message_start\ndata: {"b":2}\n\ndata: [DONE]\n\n'


async def _collect(chunks: list[bytes]) -> list[tuple[str, bytes]]:
    async def gen():  # type: ignore[no-untyped-def]
        for chunk in chunks:
            yield chunk

    return [(e.event, e.data) async for e in iter_sse_events(gen())]


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
