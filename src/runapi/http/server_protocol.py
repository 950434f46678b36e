"""uvicorn's httptools protocol with deadlines for slow clients (slow-loris protection), writing each
answer's head together with its first body bytes.

uvicorn bounds only idle keep-alive connections (`timeout_keep_alive`). A client that sends its
request head a byte at a time, or stops half-way through its body, holds a connection (and, for a
body, an app task waiting in `receive()`) for as long as it likes. This subclass adds:

- a head deadline: the request line and headers must be complete within `header_timeout` seconds
  of the request's first byte (of the connection being made, for its first request). Trickling
  bytes does not move the deadline. On expiry the client gets `408` with an OpenAI-shaped error and
  the connection is closed (if an earlier pipelined answer is still going out, it is closed after
  that answer instead);
- a head size cap: a request line plus headers over `max_header_bytes` (default 32 KiB, as common
  servers have) gets `431` at once and the connection is closed. The bytes are counted as they
  arrive, before the parser sees them: httptools grows a header value by appending each piece to
  it, so an endless header cost quadratic copying on the event loop (issue 20.3);
- a body deadline: while a request body is expected, no `body_timeout` seconds may pass without a
  byte arriving (time while uvicorn paused reading, or the client awaits `100 Continue`, is not
  counted). On expiry the connection is closed (with `408` if the app has not started its answer);
  the app's `receive()` then reports `http.disconnect`, so nothing is run or charged.

The normal path costs one `loop.call_later` handle per request head (cancelled once the headers
are parsed), plus a second only for a body not complete in the read that completed the head, and
one `loop.time()` per read while a body is expected. Pass `guarded_protocol(settings.server)` as
uvicorn's `http=`.

uvicorn writes an answer's status line and headers as soon as the app sends `http.response.start`,
then the body in a second write: two `send(2)` calls and two TCP segments for every JSON answer.
`_HeadWithFirstWrite` holds the head until the first body write (or, at the latest, the end of the
current event-loop iteration) and sends both in one.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

if TYPE_CHECKING:
    from runapi.config import ServerSettings

__all__ = ["GuardedHttpToolsProtocol", "guarded_protocol"]

_HEAD_BODY = (b'{"error":{"message":"The request headers were not received in time.",'
              b'"type":"invalid_request_error","param":null,"code":"request_timeout"}}')
_BODY_BODY = (b'{"error":{"message":"The request body was not received in time.",'
              b'"type":"invalid_request_error","param":null,"code":"request_timeout"}}')
_TOO_LARGE_BODY = (b'{"error":{"message":"The request line and headers are too large.",'
                   b'"type":"invalid_request_error","param":null,"code":"request_header_fields_too_large"}}')


class _HeadWithFirstWrite:
    """The transport as one response cycle sees it: its first write (the head) is held and joined to the
    next, or sent by itself at the end of this loop iteration; every other call goes to the transport."""

    __slots__ = ("_transport", "_held", "_flush")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._flush: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if self._flush is not None:
                self._flush.cancel()
            self._transport.write(held + data)
        elif self._flush is None:  # the first write: hold it briefly
            self._held = data
            self._flush = asyncio.get_running_loop().call_soon(self._send_held)
        else:
            self._transport.write(data)

    def _send_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._transport.write(held)

    def close(self) -> None:
        self._send_held()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` that closes connections whose request head is too large (`max_header_bytes`,
    431) or whose head or body arrives too slowly: the head within `header_timeout`, the body with no
    silence over `body_timeout` and, once `body_timeout` has passed, at an average of at least
    `min_body_rate` bytes/s (a trickle that never quite stalls)."""

    def __init__(self, *args: Any, header_timeout: float = 10.0, body_timeout: float = 30.0, min_body_rate: int = 0,
                 max_header_bytes: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.min_body_rate = min_body_rate
        self.max_header_bytes = max_header_bytes  # 0: no cap
        self._head_bytes = 0  # bytes received of the request head in progress
        self._heads = 0  # request heads parsed on this connection
        self._discarding = False  # an oversized head arrived: read nothing more
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._in_body = False  # the headers of a request were parsed, its body is not complete yet
        self._body_seen = 0.0  # loop time of the last read while `_in_body`
        self._body_since = 0.0  # loop time from which `_body_bytes` are counted
        self._body_bytes = 0

    # -- the request head ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # the first request's deadline runs from connection_made
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)

    def on_headers_complete(self) -> None:
        self._heads += 1
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._in_body = True
        self._body_since, self._body_bytes = self.loop.time(), 0
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not previous:  # a new request's cycle
            self.cycle.transport = _HeadWithFirstWrite(self.transport)  # type: ignore[assignment]

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head trickles in while an earlier answer is still going out: let that
            # answer finish, then close instead of reading on.
            self.cycle.keep_alive = False
            return
        self._refuse(_HEAD_BODY)

    # -- bytes in --------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        limit = self.max_header_bytes
        if limit and not self._in_body:
            room = limit - self._head_bytes
            if len(data) > room:
                # Feed only what fits: if the head ends within it, the rest (body, next requests) follows.
                heads = self._heads
                if room > 0:
                    self._head_bytes = limit
                    self._receive(data[:room])
                if self._heads == heads:
                    self._head_too_large()
                    return
                if not self.transport.is_closing():
                    self.data_received(data[room:])
                return
            self._head_bytes += len(data)  # reset when the head is parsed, so a body's bytes are not counted
        self._receive(data)

    def _head_too_large(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head while an earlier answer is still going out: let that answer finish,
            # then close, reading nothing more.
            self.cycle.keep_alive = False
            self._discarding = True
            return
        self._refuse(_TOO_LARGE_BODY, 431)

    def _receive(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_body:
            self._body_seen = self.loop.time()
            if self._body_timer is None and not self.transport.is_closing():
                self._body_timer = self.loop.call_later(self.body_timeout, self._body_expired)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._end_body()
        self._head_bytes = 0  # what follows is the next request's head
        super().on_message_complete()

    def _end_body(self) -> None:
        self._in_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_expired(self) -> None:
        self._body_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused or (self.cycle is not None and self.cycle.waiting_for_100_continue):
            # uvicorn stopped reading, or the client awaits "100 Continue": not its stall, nor its slowness
            self._body_seen = self._body_since = now
            self._body_bytes = 0
        deadline = self._body_seen + self.body_timeout
        if now < deadline and not self._too_slow(now):
            # Look again at the silence deadline or, sooner, when the bytes so far stop meeting the rate
            # floor: a 1 byte/s trickle is cut off after one `body_timeout`, not two (issue 20.9).
            self._body_timer = self.loop.call_at(min(deadline, max(self._slow_at(), now + 0.001)),
                                                 self._body_expired)
            return
        self._in_body = False
        if self.cycle is None or not self.cycle.response_started:
            self._refuse(_BODY_BODY)
        else:
            self.transport.close()

    def _slow_at(self) -> float:
        """When the body becomes too slow if no further byte arrives (infinity without a rate floor)."""
        if self.min_body_rate <= 0:
            return float("inf")
        return self._body_since + self.body_timeout + self._body_bytes / self.min_body_rate

    def _too_slow(self, now: float) -> bool:
        """The body averaged less than `min_body_rate` since `body_timeout` after it started."""
        late = now - self._body_since - self.body_timeout
        return self.min_body_rate > 0 and late > 0 and self._body_bytes < late * self.min_body_rate

    # -- both --------------------------------------------------------------------------------------

    def _refuse(self, body: bytes, status: int = 408) -> None:
        """Answer `status` and close (only when nothing was written for the request in progress)."""
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: application/json\r\n",
                        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                        b"connection: close\r\n\r\n", body])
        if self.cycle is not None and not self.cycle.response_complete:
            # As uvicorn does once the connection is lost (which follows): the app's receive() gets
            # `http.disconnect` and its own answer, if any, is dropped.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.write(b"".join(content))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._end_body()
        super().connection_lost(exc)


def guarded_protocol(server: ServerSettings) -> Any:
    """The protocol to pass as uvicorn's `http=`, with the `[server]` deadlines and body rate floor: a partial
    of a module-level class, so it pickles (uvicorn spawns `--workers` processes with their `Config`)."""
    return functools.partial(GuardedHttpToolsProtocol, header_timeout=server.header_timeout,
                             body_timeout=server.body_timeout, min_body_rate=server.min_body_rate,
                             max_header_bytes=server.max_header_bytes)
