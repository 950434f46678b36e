"""The upstream HTTP/1.1 client: pooled keep-alive connections on asyncio protocols, parsed by httptools.

It does only what upstream calls need: POST a body (TLS for `https`), read the status and headers,
then the body as it arrives (de-chunked, gzip/deflate decoded, reading paused while 256 KiB wait
unread), with connect, first-byte and idle timeouts. It was chosen by measurement over aiohttp,
pyreqwest, rnet, aiosonic, curl_cffi and httpr (`bench/choices.py`, figures in bench/RESULTS.md):
the upstream call was the largest single cost of a request through the gateway.

Errors: `TimeoutError` for a timeout, `UpstreamConnectionError` (an `OSError`, like the errors of
connecting) for a connection lost or a malformed answer. A pooled connection that turns out closed
before any byte of the answer arrived is retried once on a new one; nothing else is retried.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import ssl
import time
import zlib
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

import httptools

PAUSE_AT = 256 * 1024  # unread body bytes at which the socket stops being read
DRAIN_BYTES = 64 * 1024  # a released answer still arriving is read to its end (and the connection kept) ...
DRAIN_SECONDS = 2.0  # ... if what is left is at most this large and arrives within this time
DECODE_STEP = 1024 * 1024  # a decoded piece is at most this large (a small gzip body cannot balloon at once)
USER_AGENT = f"runapi/{importlib.metadata.version('runapi')}".encode()


class UpstreamConnectionError(ConnectionError):
    """The connection failed or closed mid-answer, or the answer was not valid HTTP/1.1."""


class _Origin:
    """Where a URL points: the pool key, the request target and the Host header, parsed once per URL."""

    __slots__ = ("key", "host", "port", "tls", "target", "host_header")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.key = (parts.scheme, self.host, self.port)
        self.target = ((parts.path or "/") + (f"?{parts.query}" if parts.query else "")).encode()
        default_port = self.port == (443 if self.tls else 80)
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = (name if default_port else f"{name}:{self.port}").encode("idna")


@functools.lru_cache(maxsize=256)
def _origin(url: str) -> _Origin:
    return _Origin(url)


@functools.lru_cache(maxsize=1024)
def _header_line(name: str, value: str) -> bytes:
    """`name: value\\r\\n`; a name or value holding CR or LF is refused (no header injection)."""
    if any(c in name or c in value for c in "\r\n\0"):
        raise ValueError(f"header {name!r} holds a line break")
    return f"{name}: {value}\r\n".encode("latin-1")


class _Decoder:
    """gzip or deflate (zlib-wrapped or raw) `content-encoding`, decoded in pieces of at most `DECODE_STEP`
    bytes, so a reader counting bytes stops a compression bomb before it is inflated whole."""

    def __init__(self, encoding: str) -> None:
        self._raw_allowed = encoding == "deflate"  # some servers send deflate without the zlib header
        self._zlib: zlib._Decompress | None = None
        self._start = b""  # the first byte, until the header's two bytes can be told apart
        self._input = b""
        self._more = False  # the last piece was full: the decompressor may hold more output

    def feed(self, data: bytes) -> None:
        if self._zlib is None:
            data, self._start = self._start + data, b""
            if len(data) < 2:
                self._start = data
                return
            wrapped = data[:2] == b"\x1f\x8b" or (data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0)
            raw = self._raw_allowed and not wrapped
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS | 32)  # 32: gzip or zlib
        self._input += data

    def next_piece(self) -> bytes:
        """The next decoded piece, or b"" once everything fed so far is decoded."""
        if self._zlib is None or not (self._input or self._more):
            return b""
        try:
            piece = self._zlib.decompress(self._input, DECODE_STEP)
        except zlib.error:
            raise UpstreamConnectionError("the upstream sent a body that does not decode") from None
        self._input = self._zlib.unconsumed_tail
        self._more = len(piece) == DECODE_STEP
        return piece

    def finish(self) -> None:
        """At the end of the body: a compressed stream cut short is an error, not a shorter answer."""
        if self._start or (self._zlib is not None and not self._zlib.eof):
            raise UpstreamConnectionError("the upstream's compressed body ended early")


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the answer currently arriving on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.received_any = False
        self.error: BaseException | None = None
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drained: Callable[[_Connection, bool], None] | None = None  # set while draining a released answer
        self._drain_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamConnectionError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamConnectionError(f"the upstream sent malformed HTTP: {exc}"))
        else:
            self._wake()  # once per read, after the parser's callbacks (a read may hold many body chunks)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head_done and not self.complete and self._reads_to_eof():
            self.complete = True  # a body without length or chunking ends where the connection does
        elif not self.complete and self.error is None:
            self.error = UpstreamConnectionError("the upstream closed the connection mid-answer")
        if self._drained is not None:
            self._loop.call_soon(self._end_drain)
        self._wake()

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if self.status < 200:  # 1xx interim answer: the real one follows
            self.headers = {}
            return
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        if self._drained is not None:  # a released answer's tail: counted, not kept
            self._buffered += len(body)
            if self._buffered > DRAIN_BYTES:
                self.abort()
            return
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered >= PAUSE_AT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.status < 200:
            return
        self.complete = True
        # Asked here: once the parser moves past the message it no longer knows the answer.
        self.keep_alive = self._parser.should_keep_alive()
        if self._drained is not None:
            self._loop.call_soon(self._end_drain)

    # -- used by the client and the response -----------------------------------------------------

    def _reads_to_eof(self) -> bool:
        return "content-length" not in self.headers and "chunked" not in self.headers.get("transfer-encoding", "")

    def _fail(self, error: BaseException) -> None:
        self.error = error
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float, what: str) -> None:
        """Wait for the next event on the connection, at most `timeout` seconds."""
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(timeout, _expire, waiter, what)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def send(self, head: bytes, body: bytes) -> None:
        self._reset()
        assert self.transport is not None
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)

    def take_body(self) -> bytes | None:
        """The bytes buffered so far (b"" if none yet), or None once the answer is complete and read."""
        if self._body:
            data = b"".join(self._body) if len(self._body) > 1 else self._body[0]
            self._body.clear()
            self._buffered = 0
            if self._paused and self.transport is not None:
                self._paused = False
                self.transport.resume_reading()
            return data
        return None if self.complete else b""

    def drain(self, then: Callable[[_Connection, bool], None]) -> bool:
        """The answer was released before its end arrived (a stream stops reading at its last event):
        discard the rest, then call `then(self, reusable)` once the end arrived or the connection was
        aborted (the rest too large or too slow, or the client closing). False, and aborted at once,
        when the answer cannot end before the connection does."""
        if not (self.head_done and self.error is None and not self.closed and not self._reads_to_eof()
                and "close" not in self.headers.get("connection", "").lower()):
            self.abort()
            return False
        self._body.clear()
        self._buffered = 0
        self._drained = then
        self._drain_timer = self._loop.call_later(DRAIN_SECONDS, self.abort)
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return True

    def _end_drain(self) -> None:
        then, self._drained = self._drained, None
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        if then is None:
            return
        reusable = self.reusable()
        if not reusable:
            self.abort()
        then(self, reusable)

    def reusable(self) -> bool:
        return (self.complete and self.keep_alive and not self.closed and self.error is None
                and self.transport is not None and not self.transport.is_closing())

    def abort(self) -> None:
        self.closed = True
        then, self._drained = self._drained, None
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        if self.transport is not None:
            self.transport.abort()
        if then is not None:
            then(self, False)


def _expire(waiter: asyncio.Future[None], what: str) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError(what))


class UpstreamResponse:
    """An answer whose head has arrived. Read the body with `chunks()` or `read()`; then `release()`
    hands the connection back to the pool (or closes it if the body was not read to the end)."""

    __slots__ = ("status", "headers", "_conn", "_client", "_key", "_decoder", "_idle")

    def __init__(self, conn: _Connection, client: UpstreamClient, key: tuple[str, str, int], idle: float) -> None:
        self.status = conn.status
        self.headers = conn.headers
        self._conn = conn
        self._client = client
        self._key = key
        self._idle = idle
        encoding = conn.headers.get("content-encoding", "").strip().lower()
        self._decoder = _Decoder(encoding) if encoding in ("gzip", "x-gzip", "deflate") else None

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value and value.isdigit() and self._decoder is None else None

    async def _next_raw(self) -> bytes | None:
        conn = self._conn
        while True:
            data = conn.take_body()
            if data:
                return data
            if data is None:
                return None
            if conn.error is not None:
                raise conn.error
            await conn.wait(self._idle, "the upstream stalled while sending its answer")

    async def next_chunk(self) -> bytes | None:
        """The next piece of the (decoded) body as it arrives, or None at its end."""
        decoder = self._decoder
        while True:
            if decoder is not None and (piece := decoder.next_piece()):
                return piece
            raw = await self._next_raw()
            if raw is None:
                if decoder is not None:
                    decoder.finish()
                return None
            if decoder is None:
                return raw
            decoder.feed(raw)

    def chunks(self) -> UpstreamResponse:
        """The body's pieces as they arrive (`async for`, over `next_chunk()`). A plain async iterator, not an
        async generator: one left unfinished (a stream ends at its last event) needs no finalizer task."""
        return self

    def __aiter__(self) -> UpstreamResponse:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.next_chunk()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def read(self) -> bytes:
        """The rest of the body, whole."""
        parts = []
        while (chunk := await self.next_chunk()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        """Done with the answer: a keep-alive connection whose answer has fully arrived goes back to the pool;
        any other closes (which also tells the upstream to stop generating)."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None  # type: ignore[assignment]
        if conn.reusable():
            self._client._park(self._key, conn)
        else:
            conn.abort()

    def release_after_end(self) -> None:
        """Done with an answer whose protocol said it ended (a stream's last event) while its HTTP framing
        may still be on the way: the rest is read and discarded (bounded), then the connection is pooled."""
        conn = self._conn
        if conn is None:
            return
        if conn.complete:
            self.release()
            return
        self._conn = None  # type: ignore[assignment]
        key, client = self._key, self._client
        if conn.drain(lambda drained, reusable: client._drain_ended(key, drained, reusable)):
            client._draining.add(conn)  # until its end: `close()` must close it too



class UpstreamClient:
    """Keep-alive connection pools per origin (scheme, host, port), no limit on connections."""

    def __init__(self, keepalive: float = 60.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self._keepalive = keepalive
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._draining: set[_Connection] = set()
        self._closed = False

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _park(self, key: tuple[str, str, int], conn: _Connection) -> None:
        if self._closed:
            conn.abort()
            return
        now = conn.idle_since = time.monotonic()
        idle = self._idle.setdefault(key, [])
        oldest_ok = now - self._keepalive
        while idle and (idle[0].closed or idle[0].idle_since < oldest_ok):  # the longest idle: closed or stale
            idle.pop(0).abort()
        idle.append(conn)

    def _drain_ended(self, key: tuple[str, str, int], conn: _Connection, reusable: bool) -> None:
        self._draining.discard(conn)
        if reusable:
            self._park(key, conn)

    def _pooled(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest_ok = time.monotonic() - self._keepalive
        while idle:
            conn = idle.pop()  # the most recently used first: the likeliest to be alive
            if not conn.closed and conn.idle_since >= oldest_ok and conn.transport and not conn.transport.is_closing():
                return conn
            conn.abort()
        return None

    async def _connect(self, origin: _Origin, connect_timeout: float, timeout: float) -> _Connection:
        """A new connection; `timeout` is the connect timeout, or less when the head's deadline is nearer."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(min(connect_timeout, timeout)):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop), origin.host, origin.port,
                    ssl=self._ssl_context() if origin.tls else None,
                    server_hostname=origin.host if origin.tls else None)
        except TimeoutError:
            if timeout < connect_timeout:
                raise TimeoutError("the upstream did not answer in time") from None
            raise UpstreamConnectionError(f"connecting took longer than {connect_timeout:g} s") from None
        return conn

    def _head(self, origin: _Origin, headers: dict[str, str], length: int, method: bytes = b"POST") -> bytes:
        lines = [method, b" ", origin.target, b" HTTP/1.1\r\nhost: ", origin.host_header, b"\r\n"]
        if method != b"GET":
            lines += [b"content-length: ", str(length).encode(), b"\r\n"]
        names = set()
        for name, value in headers.items():
            lines.append(_header_line(name, value))
            names.add(name.lower())
        if "accept-encoding" not in names:
            lines.append(b"accept-encoding: gzip, deflate\r\n")
        if "user-agent" not in names:
            lines.append(b"user-agent: " + USER_AGENT + b"\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    async def get(self, url: str, headers: dict[str, str], *, connect_timeout: float, head_timeout: float,
                  idle_timeout: float) -> UpstreamResponse:
        """GET `url` and wait for the answer's head (as `post`, without a body)."""
        return await self.post(url, headers, b"", connect_timeout=connect_timeout, head_timeout=head_timeout,
                               idle_timeout=idle_timeout, method=b"GET")

    async def post(self, url: str, headers: dict[str, str], body: bytes, *, connect_timeout: float,
                   head_timeout: float, idle_timeout: float, method: bytes = b"POST") -> UpstreamResponse:
        """POST `body` and wait for the answer's head (`head_timeout` covers connecting too)."""
        if self._closed:
            raise UpstreamConnectionError("the upstream client is closed")
        origin = _origin(url)
        head = self._head(origin, headers, len(body), method)
        deadline = asyncio.get_running_loop().time() + head_timeout
        conn = self._pooled(origin.key)
        while True:
            reused = conn is not None
            if conn is None:
                left = deadline - asyncio.get_running_loop().time()
                conn = await self._connect(origin, connect_timeout, max(left, 0.0))
            try:
                conn.send(head, body)
                while not conn.head_done:
                    if conn.error is not None:
                        raise conn.error
                    left = deadline - asyncio.get_running_loop().time()
                    if left <= 0:
                        raise TimeoutError("the upstream did not answer in time")
                    await conn.wait(left, "the upstream did not answer in time")
            except UpstreamConnectionError:
                conn.abort()
                if reused and not conn.received_any:  # the pooled connection had been closed: once more
                    conn = None
                    continue
                raise
            except BaseException:
                conn.abort()
                raise
            return UpstreamResponse(conn, self, origin.key, idle_timeout)

    async def close(self) -> None:
        """Close every connection this client holds: the idle ones and those still draining."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
        self._idle.clear()
        for conn in list(self._draining):
            conn.abort()
