"""Server-sent events: incremental parsing of an upstream byte stream, and framing for clients."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator

import msgspec

from runapi.providers.upstream_http import response_too_large


class SseEvent(msgspec.Struct, gc=False):
    """One event: its `event:` name ("" when none) and its `data:` lines joined by newlines."""

    event: str
    data: bytes


def parse_sse_event(block: bytes) -> SseEvent | None:
    """One event from the lines of a block (without the blank line that ends it)."""
    event = ""
    data: list[bytes] = []
    for line in block.split(b"\n"):
        line = line.rstrip(b"\r")
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            event = value.decode("utf-8", "replace")
    if not data and not event:
        return None
    return SseEvent(event, b"\n".join(data))


async def iter_sse_batches(chunks: AsyncIterable[bytes], max_event_bytes: int = 32 * 1024 * 1024
                           ) -> AsyncGenerator[list[SseEvent], None]:
    """Events from arbitrarily split bytes: after each read, the events it completed, as one list
    (events that arrived together are relayed together, and none waits for a later read).

    An event (or an unterminated tail) over `max_event_bytes` raises `UpstreamError` instead of growing
    memory; the events complete before it are yielded first. One split per read; the usual event (one
    `data:` line) is taken without `parse_sse_event`."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk.replace(b"\r\n", b"\n") if b"\r" in chunk else chunk
        if b"\n\n" in buffer:
            *blocks, buffer = buffer.split(b"\n\n")
            events: list[SseEvent] = []
            for block in blocks:
                if len(block) > max_event_bytes:
                    if events:
                        yield events
                    raise response_too_large(max_event_bytes)
                if block.startswith(b"data: ") and b"\n" not in block and b"\r" not in block:
                    events.append(SseEvent("", block[6:]))
                elif (event := parse_sse_event(block)) is not None:
                    events.append(event)
            if events:
                yield events
        if len(buffer) > max_event_bytes:
            raise response_too_large(max_event_bytes)
    if buffer.strip():
        event = parse_sse_event(buffer)
        if event is not None:
            yield [event]


def frame(data: bytes, event: str = "") -> bytes:
    """One SSE event for a client."""
    if event:
        return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"
