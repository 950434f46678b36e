"""How the development simulator misbehaves on purpose: stalls, dropped connections, broken streams.

Fault names (see `SimulatorConfig.fault`): "429" and "500" answer with the
provider's error; "cut" drops the connection (a stream after about half the
answer); "stall" never answers (a stream after its first event); "bad_json"
sends malformed JSON; "error_event" ends a stream with the protocol's error event.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import Receive, Send

from .generation import StreamScript

__all__ = ["SSE_HEADERS", "STALL_SECONDS", "drop_connection", "play_stream", "wait_for_disconnect"]

STALL_SECONDS = 3600.0
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


async def wait_for_disconnect(receive: Receive, seconds: float) -> None:
    """Wait up to `seconds`, returning as soon as the client disconnects.

    Call it only once the request body has been read.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass


async def drop_connection(send: Send) -> None:
    """Make the server close the connection without writing a single response byte.

    ASGI has no abort message, and uvicorn answers 500 for an app that raises
    before starting a response. A header value it refuses to write marks the
    response as started with nothing sent; the caller then returns, and uvicorn
    closes the socket ("Server disconnected without sending a response" for the
    client). Other ASGI servers may answer 500 instead.
    """
    with contextlib.suppress(Exception):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-sim-fault", b"cut\r\n")]})


async def play_stream(send: Send, receive: Receive, script: StreamScript, fault: str, chunk_delay: float) -> None:
    """Send `script` as an SSE response, bent by `fault` ("" for none).

    "cut" returns after `frames[:midpoint]` with the response incomplete, so the
    server drops the connection; "stall" sends the first frame and then waits for
    the client to leave (at most `STALL_SECONDS`).
    """
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    frames, paced = script.frames, script.paced
    if fault == "stall":
        await send({"type": "http.response.body", "body": frames[0], "more_body": True})
        await wait_for_disconnect(receive, STALL_SECONDS)
        return
    if fault in ("cut", "error_event"):
        frames, paced = frames[: script.midpoint], paced[: script.midpoint]
    elif fault == "bad_json":
        frames = [*frames[: script.midpoint], script.malformed, *frames[script.midpoint :]]
        paced = [*paced[: script.midpoint], False, *paced[script.midpoint :]]
    for frame, wait in zip(frames, paced, strict=True):
        if wait:  # even a zero delay yields, so a disconnect is noticed and other requests interleave
            await asyncio.sleep(chunk_delay)
        await send({"type": "http.response.body", "body": frame, "more_body": True})
    if fault == "cut":
        return
    last = script.error if fault == "error_event" else b""
    await send({"type": "http.response.body", "body": last, "more_body": False})
