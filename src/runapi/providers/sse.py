"""Server-sent events: incremental parsing of an upstream byte stream, and framing for clients."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from runapi.providers.upstream_http import response_too_large


class SseEvent:
    __slots__ = ("event", "data", "more")

    def __init__(self, event: str, data: bytes) -> None:
        self.event = event
        self.data = data
        self.more = False  # another complete event is already buffered behind this one


def parse_sse_event(block: bytes) -> SseEvent | None:
    """One event from the lines of a block (without the blank line that ends it)."""
    if block.startswith(b"data: ") and b"\n" not in block and b"\r" not in block:
        return SseEvent("", block[6:])  # the usual event: one data line
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
                           ) -> AsyncIterator[list[SseEvent]]:
    """Events from arbitrarily split bytes: after each read, the events it completed, as one list.

    An event (or an unterminated tail) over `max_event_bytes` raises `UpstreamError` instead of growing
    memory; the events complete before it are yielded first. Each event's `more` is set when another
    follows it in the same list. One split per read and one length comparison per event."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk.replace(b"\r\n", b"\n") if b"\r" in chunk else chunk
        if b"\n\n" in buffer:
            *blocks, buffer = buffer.split(b"\n\n")
            events: list[SseEvent] = []
            for block in blocks:
                if len(block) > max_event_bytes:
                    if events:
                        events[-1].more = False
                        yield events
                    raise response_too_large(max_event_bytes)
                event = parse_sse_event(block)
                if event is not None:
                    event.more = True
                    events.append(event)
            if events:
                events[-1].more = False
                yield events
        if len(buffer) > max_event_bytes:
            raise response_too_large(max_event_bytes)
    if buffer.strip():
        event = parse_sse_event(buffer)
        if event is not None:
            yield [event]


async def iter_sse_events(chunks: AsyncIterable[bytes], max_event_bytes: int = 32 * 1024 * 1024
                          ) -> AsyncIterator[SseEvent]:
    """`iter_sse_batches`, one event at a time: each yielded as soon as its blank line arrives."""
    async for events in iter_sse_batches(chunks, max_event_bytes):
        for event in events:
            yield event


def frame(data: bytes, event: str = "") -> bytes:
    """One SSE event for a client."""
    if event:
        return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"
