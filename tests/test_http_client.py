"""The upstream HTTP/1.1 client (`runapi.transport.http_client`) against real servers on loopback: what
goes on the wire (method, target, Host, length, headers, body; no header injection), keep-alive reuse
and when a connection is not reused, the retry of a pooled connection found closed (once, and only
before any answer byte), bodies de-chunked / read to EOF / gzip- and deflate-decoded, streaming as the
bytes arrive, the connect / head / idle timeouts, lost connections and malformed HTTP, bounded
buffering while the reader is slow, 1xx interim answers, and TLS (a trusted and an untrusted
certificate). Raw `asyncio` servers where the exact bytes matter, aiohttp.web where a real HTTP server
is enough, one blocking-socket server in a thread to close a connection behind the client's back."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import shutil
import socket
import ssl
import subprocess
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from runapi.transport.http_client import (
    DECODE_STEP,
    DRAIN_BYTES,
    PAUSE_AT,
    UpstreamClient,
    UpstreamConnectionError,
    UpstreamResponse,
    _Decoder,
)
from tests.support.raw_servers import (
    Handler,
    RawServer,
    answer,
    answering,
    read_request,
)
from tests.support.servers import free_port

READ_SIZE = 256 * 1024  # the most an asyncio socket transport reads at once


def repeating(data: bytes) -> Handler:
    """A handler that answers every request on the connection with `data`."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(data)
            await writer.drain()

    return handler


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # accepts, reads, never answers


@pytest.fixture()
async def client() -> AsyncIterator[UpstreamClient]:
    upstream = UpstreamClient()
    try:
        yield upstream
    finally:
        await upstream.close()
        await asyncio.sleep(0)  # let aborted transports finish closing


async def post(client: UpstreamClient, url: str, body: bytes = b'{"x":1}', headers: dict[str, str] | None = None,
               connect: float = 2.0, head: float = 2.0, idle: float = 2.0) -> UpstreamResponse:
    return await client.post(url, headers or {}, body, connect_timeout=connect, head_timeout=head,
                             idle_timeout=idle)


async def fetch(client: UpstreamClient, url: str, body: bytes = b'{"x":1}') -> bytes:
    """POST, read the whole body and release the connection."""
    response = await post(client, url, body)
    try:
        return await response.read()
    finally:
        response.release()


def pool_key(server: RawServer) -> tuple[str, str, int]:
    return ("http", "127.0.0.1", server.port)


async def read_fails(client: UpstreamClient, url: str, match: str) -> None:
    """POST; reading the answer raises `UpstreamConnectionError` matching `match`; release."""
    response = await post(client, url)
    try:
        with pytest.raises(UpstreamConnectionError, match=match):
            await response.read()
    finally:
        response.release()


@contextlib.asynccontextmanager
async def aiohttp_server(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


# -- the request and the answer -------------------------------------------------------------------


async def test_a_post_carries_target_host_length_headers_and_body(client: UpstreamClient) -> None:
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append({"method": request.method, "path_qs": request.path_qs, "headers": request.headers,
                     "body": await request.read(), "version": request.version})
        return web.Response(status=201, body=b'{"id":"abc"}', headers={"x-request-id": "r-1"},
                            content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    async with aiohttp_server(app) as base:
        body = b'{"model":"m","messages":[]}'
        response = await post(client, f"{base}/v1/chat/completions?api-version=2024-01", body,
                              {"Authorization": "Bearer sk-1", "Content-Type": "application/json"})
        try:
            assert response.status == 201
            assert response.headers["x-request-id"] == "r-1"
            assert response.headers["content-type"].startswith("application/json")
            assert response.content_length == len(b'{"id":"abc"}')
            assert await response.read() == b'{"id":"abc"}'
        finally:
            response.release()

    (request,) = seen
    port = base.rsplit(":", 1)[1]
    assert request["method"] == "POST" and request["version"] == (1, 1)
    assert request["path_qs"] == "/v1/chat/completions?api-version=2024-01"
    headers = request["headers"]
    assert headers["Host"] == f"127.0.0.1:{port}"
    assert headers["Content-Length"] == str(len(body))
    assert headers["Authorization"] == "Bearer sk-1" and headers["Content-Type"] == "application/json"
    assert headers["Accept-Encoding"] == "gzip, deflate"  # added when the caller has none
    assert headers["User-Agent"].startswith("runapi/")
    assert request["body"] == body


async def test_a_large_request_body_arrives_whole() -> None:
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append((await read_request(reader))[1])
        writer.write(answer(b"done"))
        await reader.read()

    body = bytes(range(256)) * 4096 + b"tail"  # 1 MiB: past the size where head and body are written apart
    client = UpstreamClient()
    try:
        async with RawServer(handler) as server:
            assert await fetch(client, server.url(), body) == b"done"
    finally:
        await client.close()
    assert received == [body]


async def test_header_names_are_lower_cased_and_repeated_headers_joined(client: UpstreamClient) -> None:
    data = answer(b"{}", "X-Multi: a", "Set-Cookie: s=1", "x-multi: b", "SET-COOKIE: t=2")
    async with RawServer(answering(data)) as server:
        response = await post(client, server.url())
        try:
            assert response.headers["x-multi"] == "a, b"
            assert response.headers["set-cookie"] == "s=1, t=2"
            assert "X-Multi" not in response.headers
            assert await response.read() == b"{}"
        finally:
            response.release()


@pytest.mark.parametrize("name, value", [("x-note", "a\r\nx-injected: 1"), ("x-note\r\nx-injected", "1"),
                                         ("x-note", "a\nb"), ("x-note", "a\0b")])
async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(
        client: UpstreamClient, name: str, value: str) -> None:
    async with RawServer(answering(answer())) as server:
        with pytest.raises(ValueError, match="line break"):
            await post(client, server.url(), headers={name: value})
        await asyncio.sleep(0.02)  # a connection, had one been opened, would be accepted by now
        assert server.accepted == 0


# -- keep-alive ---------------------------------------------------------------------------------


async def test_sequential_posts_share_one_connection(client: UpstreamClient) -> None:
    peers: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(body=f"answer {len(peers)}".encode())

    app = web.Application()
    app.router.add_post("/v1/x", handle)
    async with aiohttp_server(app) as base:
        assert await fetch(client, f"{base}/v1/x") == b"answer 1"
        assert await fetch(client, f"{base}/v1/x") == b"answer 2"
        assert await fetch(client, f"{base}/v1/x") == b"answer 3"
    assert len(peers) == 3 and peers[0] is not None
    assert len(set(peers)) == 1  # one client port: one TCP connection


async def test_sequential_posts_reuse_the_connection_on_a_raw_server(client: UpstreamClient) -> None:
    async with RawServer(repeating(answer(b"again"))) as server:
        for _ in range(3):
            assert await fetch(client, server.url()) == b"again"
        assert server.accepted == 1


async def test_an_answer_with_connection_close_is_not_reused(client: UpstreamClient) -> None:
    async with RawServer(answering(answer(b"bye", "connection: close"))) as server:
        assert await fetch(client, server.url()) == b"bye"
        assert client._idle.get(pool_key(server), []) == []
        assert await fetch(client, server.url()) == b"bye"
        assert server.accepted == 2


async def test_an_http_1_0_answer_is_not_reused(client: UpstreamClient) -> None:
    data = b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nold"
    async with RawServer(answering(data)) as server:
        assert await fetch(client, server.url()) == b"old"
        assert await fetch(client, server.url()) == b"old"
        assert server.accepted == 2


async def test_an_answer_released_unread_after_it_fully_arrived_keeps_its_connection(client: UpstreamClient) -> None:
    async with RawServer(repeating(answer(b"x" * 1000))) as server:
        response = await post(client, server.url())
        assert response.status == 200
        for _ in range(100):  # the body arrives right behind the head
            if response._conn.complete:
                break
            await asyncio.sleep(0.005)
        response.release()  # body never read, but the message is whole: the connection is clean
        assert len(client._idle.get(pool_key(server), [])) == 1
        assert await fetch(client, server.url()) == b"x" * 1000
        assert server.accepted == 1


async def test_an_answer_read_in_part_is_not_reused(client: UpstreamClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await reader.read()  # the rest never comes

    async with RawServer(handler) as server:
        response = await post(client, server.url())
        assert await response.next_chunk() == b"first"
        response.release()
        assert client._idle.get(pool_key(server), []) == []


async def test_idle_connections_expire_after_the_keepalive() -> None:
    client = UpstreamClient(keepalive=0.05)
    try:
        async with RawServer(repeating(answer(b"k"))) as server:
            assert await fetch(client, server.url()) == b"k"
            await asyncio.sleep(0.1)
            assert await fetch(client, server.url()) == b"k"
            assert server.accepted == 2
    finally:
        await client.close()


async def test_a_closed_client_refuses_posts_and_closes_late_releases() -> None:
    client = UpstreamClient()
    async with RawServer(repeating(answer(b"late"))) as server:
        response = await post(client, server.url())
        await client.close()
        assert await response.read() == b"late"
        response.release()
        assert client._idle == {}  # not parked in a closed client
        with pytest.raises(UpstreamConnectionError):
            await post(client, server.url())


# -- a pooled connection closed by the server ---------------------------------------------------


async def test_a_pooled_connection_the_server_closed_is_replaced(client: UpstreamClient) -> None:
    close_now = asyncio.Event()
    requests: list[tuple[int, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = server.accepted
        _, body = await read_request(reader)
        requests.append((index, body))
        writer.write(answer(f"from {index}".encode()))
        await writer.drain()
        if index == 1:
            await close_now.wait()  # idle keep-alive connection closed by the server
            return
        await reader.read()

    async with RawServer(handler) as server:
        assert await fetch(client, server.url(), b"one") == b"from 1"
        (pooled,) = client._idle[pool_key(server)]
        close_now.set()
        deadline = time.monotonic() + 2
        while not pooled.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert pooled.closed
        assert await fetch(client, server.url(), b"two") == b"from 2"
    assert requests == [(1, b"one"), (2, b"two")]


class ClosingThreadServer:
    """A blocking server in a thread: answers one request on its first connection, closes that
    connection when told (and says when it is closed), then answers one request on a second."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)
        self.port = self.listener.getsockname()[1]
        self.requests: list[tuple[int, bytes]] = []
        self.accepted = 0
        self.close_first = threading.Event()
        self.first_closed = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _read_request(sock: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            part = sock.recv(65536)
            if not part:
                return b""
            data += part
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += sock.recv(65536)
        return body

    def _serve_one(self, close_when_told: bool) -> None:
        sock, _ = self.listener.accept()
        self.accepted += 1
        index = self.accepted
        with sock:
            sock.settimeout(5)
            body = self._read_request(sock)
            self.requests.append((index, body))
            sock.sendall(answer(f"from {index}".encode()))
            if close_when_told:
                self.close_first.wait(5)
            else:
                sock.recv(1)  # until the client closes
        if close_when_told:
            self.first_closed.set()

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            self._serve_one(close_when_told=True)
            self._serve_one(close_when_told=False)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat"


async def test_a_pooled_connection_closed_unnoticed_is_retried_once_on_a_new_one(client: UpstreamClient) -> None:
    server = ClosingThreadServer()
    server.thread.start()
    try:
        assert await fetch(client, server.url(), b"one") == b"from 1"
        (pooled,) = client._idle[("http", "127.0.0.1", server.port)]
        server.close_first.set()
        # Block the event loop until the server has closed the connection: the client cannot have
        # seen the close, so the next post goes out on the dead connection first.
        assert server.first_closed.wait(5)
        assert not pooled.closed
        response = await post(client, server.url(), b"two")
        try:
            assert pooled.closed  # it was tried, failed, and was dropped
            assert response.status == 200 and await response.read() == b"from 2"
        finally:
            response.release()
        await client.close()  # the thread's second connection sees EOF and ends
        await asyncio.to_thread(server.thread.join, 5)
        assert not server.thread.is_alive()
    finally:
        server.listener.close()
    assert server.accepted == 2
    assert server.requests == [(1, b"one"), (2, b"two")]  # the retried request reached the server once


async def test_a_new_connection_closed_before_answering_is_not_retried(client: UpstreamClient) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # and close without a byte of answer

    async with RawServer(hang_up) as server:
        with pytest.raises(UpstreamConnectionError):
            await post(client, server.url())
        assert server.accepted == 1


async def test_a_pooled_connection_closed_before_answering_twice_fails_after_one_retry(
        client: UpstreamClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if server.accepted == 1:
            writer.write(answer(b"first"))
            await read_request(reader)  # the second request: hang up without answering
        # later connections: hang up on the first request

    async with RawServer(handler) as server:
        assert await fetch(client, server.url()) == b"first"
        with pytest.raises(UpstreamConnectionError):
            await post(client, server.url())
        assert server.accepted == 2  # the pooled connection, then exactly one new one


async def test_a_pooled_connection_closed_mid_answer_is_not_retried(client: UpstreamClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"first"))
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-")  # part of a head, then the connection ends

    async with RawServer(handler) as server:
        assert await fetch(client, server.url()) == b"first"
        with pytest.raises(UpstreamConnectionError):
            await post(client, server.url())
        assert server.accepted == 1  # the request may have been acted on: not sent again


# -- bodies -------------------------------------------------------------------------------------


async def test_a_chunked_body_is_decoded(client: UpstreamClient) -> None:
    data = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"6\r\nhello \r\n"
            b"5;ext=1\r\nworld\r\n"
            b"1\r\n!\r\n"
            b"0\r\nx-trailer: t\r\n\r\n")
    async with RawServer(repeating(data)) as server:
        response = await post(client, server.url())
        try:
            assert response.content_length is None
            assert await response.read() == b"hello world!"
        finally:
            response.release()
        assert await fetch(client, server.url()) == b"hello world!"  # and the connection was reusable
        assert server.accepted == 1


async def test_a_body_without_length_or_chunking_is_read_to_eof(client: UpstreamClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil ")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"the end")
        # returning closes the connection: the end of the body

    async with RawServer(handler) as server:
        response = await post(client, server.url())
        try:
            assert response.content_length is None
            assert await response.read() == b"until the end"
        finally:
            response.release()
        assert client._idle.get(pool_key(server), []) == []  # a body ended by EOF: no connection left
        assert await fetch(client, server.url()) == b"until the end"
        assert server.accepted == 2


def chunked(encoded: bytes, size: int) -> bytes:
    """`encoded` as a chunked body in pieces of `size` bytes."""
    pieces = [encoded[i:i + size] for i in range(0, len(encoded), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


PLAIN = b'{"choices":[{"delta":{"content":"' + b"lorem ipsum " * 2000 + b'"}}]}'


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize("encoding, encoded", [
    ("gzip", gzip.compress(PLAIN)),
    ("x-gzip", gzip.compress(PLAIN)),
    ("deflate", zlib.compress(PLAIN)),  # zlib-wrapped, as the RFC says
    ("deflate", raw_deflate(PLAIN)),  # raw, as some servers send it
], ids=["gzip", "x-gzip", "deflate-zlib", "deflate-raw"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_an_encoded_body_is_decoded(client: UpstreamClient, encoding: str, encoded: bytes, framing: str) -> None:
    if framing == "content-length":
        data = answer(encoded, f"content-encoding: {encoding}")
    else:
        data = (f"HTTP/1.1 200 OK\r\ncontent-encoding: {encoding}\r\ntransfer-encoding: chunked\r\n\r\n".encode()
                + chunked(encoded, 97))
    async with RawServer(answering(data)) as server:
        response = await post(client, server.url())
        try:
            assert response.headers["content-encoding"] == encoding
            assert response.content_length is None  # the header gives the encoded size, not what is read
            assert await response.read() == PLAIN
        finally:
            response.release()


async def test_a_raw_deflate_body_decodes_whatever_its_first_piece(client: UpstreamClient) -> None:
    encoded = raw_deflate(PLAIN)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-encoding: deflate\r\ntransfer-encoding: chunked\r\n\r\n"
                     + b"1\r\n" + encoded[:1] + b"\r\n")  # one chunk of one byte, body not ended
        await writer.drain()
        await asyncio.sleep(0.05)  # the client reads the lone first byte before the rest exists
        writer.write(chunked(encoded[1:], 4096))
        await reader.read()

    async with RawServer(handler) as server:
        response = await post(client, server.url())
        try:
            assert await response.read() == PLAIN
        finally:
            response.release()
    decoder = _Decoder("deflate")  # the same, fed directly: one byte cannot tell raw from zlib-wrapped
    decoder.feed(encoded[:1])
    assert decoder.next_piece() == b""
    decoder.feed(encoded[1:])
    assert decoder.next_piece() == PLAIN and decoder.next_piece() == b""
    decoder.finish()


async def test_a_compression_bomb_is_decoded_in_bounded_pieces(client: UpstreamClient) -> None:
    bomb = gzip.compress(b"\0" * (8 * DECODE_STEP))  # 8 MiB from about 8 KiB
    async with RawServer(answering(answer(bomb, "content-encoding: gzip"))) as server:
        response = await post(client, server.url())
        try:
            sizes = []
            while (piece := await response.next_chunk()) is not None:
                sizes.append(len(piece))
            assert max(sizes) <= DECODE_STEP and sum(sizes) == 8 * DECODE_STEP
        finally:
            response.release()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_body_cut_short_is_an_error_not_a_shorter_answer(client: UpstreamClient,
                                                                           encoding: str) -> None:
    whole = gzip.compress(PLAIN) if encoding == "gzip" else zlib.compress(PLAIN)
    cut = whole[: len(whole) // 2]  # framing complete (content-length matches), compressed stream not
    async with RawServer(answering(answer(cut, f"content-encoding: {encoding}"))) as server:
        await read_fails(client, server.url(), "ended early")


async def test_a_body_that_does_not_decode_is_a_connection_error(client: UpstreamClient) -> None:
    async with RawServer(answering(answer(b"this is not gzip at all", "content-encoding: gzip"))) as server:
        await read_fails(client, server.url(), "does not decode")


# -- streaming ----------------------------------------------------------------------------------


async def test_next_chunk_returns_each_piece_as_it_arrives(client: UpstreamClient) -> None:
    gates = [asyncio.Event(), asyncio.Event()]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for index, gate in enumerate(gates):
            writer.write(chunked(f"data: {index}\n\n".encode(), 1024)[:-5])  # one chunk, not the last
            await writer.drain()
            await gate.wait()  # nothing more until the client has had this piece
        writer.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
        await reader.read()

    async with RawServer(handler) as server:
        response = await post(client, server.url(), idle=2.0)
        try:
            assert await response.next_chunk() == b"data: 0\n\n"
            gates[0].set()
            assert await response.next_chunk() == b"data: 1\n\n"
            gates[1].set()
            assert [piece async for piece in response.chunks()] == [b"data: [DONE]\n\n"]
            assert await response.next_chunk() is None
        finally:
            response.release()
        assert len(client._idle[pool_key(server)]) == 1  # read to its end: back in the pool


async def test_the_head_is_returned_before_the_body_arrives(client: UpstreamClient) -> None:
    gate = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
        await writer.drain()
        await gate.wait()
        writer.write(b"body")
        await reader.read()

    async with RawServer(handler) as server:
        response = await post(client, server.url())
        try:
            assert response.status == 200 and response.content_length == 4
            gate.set()
            assert await response.read() == b"body"
        finally:
            response.release()


# -- timeouts and connection failures -----------------------------------------------------------


async def test_no_answer_within_the_head_timeout_is_a_timeout(client: UpstreamClient) -> None:
    async with RawServer(silent) as server:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await post(client, server.url(), head=0.3)
        assert 0.25 <= time.monotonic() - started < 1.0
        assert server.accepted == 1


async def test_a_head_that_trickles_past_the_head_timeout_is_a_timeout(client: UpstreamClient) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n":
            if writer.is_closing():
                return
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)

    async with RawServer(trickle) as server:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await post(client, server.url(), head=0.3)
        assert time.monotonic() - started < 1.0  # the deadline is for the whole head, not per byte


async def test_a_body_stalling_past_the_idle_timeout_is_a_timeout(client: UpstreamClient) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart of it")
        await reader.read()

    async with RawServer(stall) as server:
        response = await post(client, server.url(), idle=0.3)
        try:
            assert await response.next_chunk() == b"part of it"
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await response.next_chunk()
            assert 0.25 <= time.monotonic() - started < 1.0
        finally:
            response.release()
        assert client._idle.get(pool_key(server), []) == []


async def test_connecting_to_a_closed_port_is_refused(client: UpstreamClient) -> None:
    with pytest.raises(ConnectionRefusedError):
        await post(client, f"http://127.0.0.1:{free_port()}/v1/chat")


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A listening port that never accepts, its backlog filled: one more connect hangs (on Linux)."""
    listener = socket.socket()
    fillers = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            with contextlib.suppress(BlockingIOError):
                filler.connect(listener.getsockname())
        yield listener.getsockname()[1]
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_a_connect_past_the_connect_timeout_is_a_connection_error(client: UpstreamClient) -> None:
    with full_backlog() as port:
        started = time.monotonic()
        with pytest.raises(UpstreamConnectionError, match="connecting took longer") as caught:
            await post(client, f"http://127.0.0.1:{port}/v1/chat", connect=0.2, head=5.0)
        assert not isinstance(caught.value, TimeoutError)  # a failed connect, not a slow answer
        assert time.monotonic() - started < 1.0


async def test_a_connect_past_the_head_deadline_is_a_timeout(client: UpstreamClient) -> None:
    with full_backlog() as port:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await post(client, f"http://127.0.0.1:{port}/v1/chat", connect=5.0, head=0.2)
        assert time.monotonic() - started < 1.0


async def test_a_server_closing_mid_body_is_a_connection_error(client: UpstreamClient) -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly this")

    async with RawServer(short) as server:
        await read_fails(client, server.url(), "mid-answer")


async def test_a_server_closing_mid_chunked_body_is_a_connection_error(client: UpstreamClient) -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")

    async with RawServer(short) as server:
        response = await post(client, server.url())
        try:
            assert await response.next_chunk() == b"first"  # what arrived is still delivered
            with pytest.raises(UpstreamConnectionError):
                await response.next_chunk()
        finally:
            response.release()


@pytest.mark.parametrize("data", [
    b"SMTP ready\r\n\r\n",
    b"HTTP/1.1 abc OK\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nhey",
    b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n",
], ids=["not-http", "bad-status", "conflicting-lengths", "bad-header"])
async def test_a_malformed_head_is_a_connection_error(client: UpstreamClient, data: bytes) -> None:
    async with RawServer(answering(data)) as server:
        with pytest.raises(UpstreamConnectionError, match="malformed"):
            await post(client, server.url())
        assert server.accepted == 1  # not retried


async def test_a_malformed_chunk_is_a_connection_error(client: UpstreamClient) -> None:
    data = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\nzz\r\nnot hex\r\n0\r\n\r\n"
    async with RawServer(answering(data)) as server:
        await read_fails(client, server.url(), "malformed")


# -- flow control -------------------------------------------------------------------------------


async def test_a_slow_reader_pauses_the_socket_and_buffers_a_bounded_amount(client: UpstreamClient) -> None:
    body = random.Random(7).randbytes(4 * 1024 * 1024)
    sent = asyncio.Event()

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body))
        writer.write(body)
        await writer.drain()
        sent.set()
        await reader.read()

    async with RawServer(flood) as server:
        response = await post(client, server.url())
        conn = response._conn
        received = bytearray()
        most_buffered = 0
        pauses = 0
        try:
            while True:
                # Let the connection read all it will before the next read: until it pauses the socket,
                # or the whole answer is in.
                deadline = time.monotonic() + 2
                while not (conn._paused or conn.complete) and time.monotonic() < deadline:
                    await asyncio.sleep(0.001)
                assert conn._paused or conn.complete
                if conn._paused:
                    pauses += 1
                    assert not conn.transport.is_reading()
                    before = conn._buffered
                    await asyncio.sleep(0.005)
                    assert conn._buffered == before  # a paused socket is not read
                most_buffered = max(most_buffered, conn._buffered)
                piece = await response.next_chunk()
                if piece is None:
                    break
                received += piece
        finally:
            response.release()
        assert sent.is_set()
    assert bytes(received) == body
    assert pauses >= 4  # flow control engaged again and again
    assert most_buffered <= PAUSE_AT + READ_SIZE  # never more than the pause mark and one socket read


# -- interim answers ----------------------------------------------------------------------------


async def test_a_100_continue_is_skipped_for_the_real_answer(client: UpstreamClient) -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b'{"ok":true}', "x-final: yes")
    async with RawServer(repeating(data)) as server:
        response = await post(client, server.url())
        try:
            assert response.status == 200
            assert response.headers["x-final"] == "yes"
            assert await response.read() == b'{"ok":true}'
        finally:
            response.release()
        assert await fetch(client, server.url()) == b'{"ok":true}'  # and the connection stays usable
        assert server.accepted == 1


async def test_interim_answers_do_not_leak_their_headers(client: UpstreamClient) -> None:
    data = (b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 102 Processing\r\n\r\n" + answer(b"final", "x-final: yes", status="202 Accepted"))
    async with RawServer(answering(data)) as server:
        response = await post(client, server.url())
        try:
            assert response.status == 202
            assert "link" not in response.headers and response.headers["x-final"] == "yes"
            assert await response.read() == b"final"
        finally:
            response.release()


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=30)
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


async def test_https_to_a_trusted_certificate(certificate: tuple[Path, Path]) -> None:
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, body = await read_request(reader)
            requests.append(head + body)
            writer.write(answer(gzip.compress(b"secret " * 100), "content-encoding: gzip"))

    client = UpstreamClient(ssl_context=ssl.create_default_context(cafile=str(certificate[0])))
    try:
        async with RawServer(handler, server_context(certificate)) as server:
            for _ in range(2):
                response = await post(client, server.url(), b'{"tls":1}')
                try:
                    assert response.status == 200
                    assert await response.read() == b"secret " * 100
                finally:
                    response.release()
            assert server.accepted == 1  # TLS connections are pooled too
            assert len(requests) == 2
            assert requests[0].startswith(b"POST /v1/chat HTTP/1.1\r\n")
            assert f"host: 127.0.0.1:{server.port}\r\n".encode() in requests[0]
            assert requests[0].endswith(b'\r\n\r\n{"tls":1}')
    finally:
        await client.close()
        await asyncio.sleep(0)


async def test_https_to_an_untrusted_certificate_is_refused(
        client: UpstreamClient, certificate: tuple[Path, Path]) -> None:
    async with RawServer(answering(answer(b"never")), server_context(certificate)) as server:
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            await post(client, server.url())
        assert isinstance(caught.value, OSError)


# -- a stream's end: its last event arrives before the HTTP framing's end ---------------------------------


def stream_server(tail_gate: asyncio.Event, tail: bytes = b"0\r\n\r\n") -> Handler:
    """Answers each request with a chunked stream whose last event is sent at once and whose `tail`
    (the chunked terminator, by default) only once `tail_gate` is set; counts as `repeating` does."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            event = b"data: [DONE]\n\n"
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                         + b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await tail_gate.wait()
            tail_gate.clear()
            writer.write(tail)
            await writer.drain()

    return handler


async def test_a_stream_released_after_its_last_event_keeps_its_connection(client: UpstreamClient) -> None:
    gate = asyncio.Event()
    async with RawServer(stream_server(gate)) as server:
        for _ in range(2):
            response = await post(client, server.url())
            assert await response.next_chunk() == b"data: [DONE]\n\n"
            response.release_after_end()  # the terminator has not been sent yet
            gate.set()
            for _ in range(100):  # the drained connection returns to the pool once the terminator arrives
                if client._idle.get(("http", "127.0.0.1", server.port)):
                    break
                await asyncio.sleep(0.005)
        assert server.accepted == 1


async def test_a_stream_released_mid_answer_closes_its_connection(client: UpstreamClient) -> None:
    gate = asyncio.Event()
    async with RawServer(stream_server(gate)) as server:
        response = await post(client, server.url())
        assert await response.next_chunk() == b"data: [DONE]\n\n"
        response.release()  # not "after the end": a client went away, the upstream must stop
        gate.set()
        response = await post(client, server.url())
        response.release_after_end()
        assert server.accepted == 2


async def test_a_drained_tail_too_large_closes_the_connection(client: UpstreamClient) -> None:
    gate = asyncio.Event()
    junk = b"x" * (DRAIN_BYTES + 1)
    async with RawServer(stream_server(gate, tail=b"%x\r\n%s\r\n0\r\n\r\n" % (len(junk), junk))) as server:
        response = await post(client, server.url())
        await response.next_chunk()
        response.release_after_end()
        gate.set()
        await asyncio.sleep(0.1)
        assert not client._idle.get(("http", "127.0.0.1", server.port))
        response = await post(client, server.url())
        response.release()
        assert server.accepted == 2


async def test_connections_the_server_closed_leave_the_pool_as_traffic_goes_on() -> None:
    upstream = UpstreamClient()
    try:
        async with RawServer(repeating(answer(b"ok"))) as server:
            responses = [await post(upstream, server.url()) for _ in range(5)]  # five connections at once
            for response in responses:
                assert await response.read() == b"ok"
                response.release()
            assert len(upstream._idle[pool_key(server)]) == 5 and server.accepted == 5
            for conn in upstream._idle[pool_key(server)][:4]:
                conn.transport.abort()  # as if the server had closed the four longest idle
            await asyncio.sleep(0)
            assert await fetch(upstream, server.url()) == b"ok"  # reuses the live one; parking it sweeps the rest
            assert [conn.closed for conn in upstream._idle[pool_key(server)]] == [False]
            assert server.accepted == 5
    finally:
        await upstream.close()


async def test_closing_the_client_closes_connections_still_draining() -> None:
    upstream = UpstreamClient()
    closed_by_client = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        event = b"data: [DONE]\n\n"
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        if await reader.read() == b"":  # the terminator never comes; the client must still let go
            closed_by_client.set()

    try:
        async with RawServer(handler) as server:
            response = await post(upstream, server.url())
            assert await response.next_chunk() == b"data: [DONE]\n\n"
            response.release_after_end()
            assert len(upstream._draining) == 1
            await upstream.close()  # as the gateway stops
            await asyncio.wait_for(closed_by_client.wait(), 2)
            assert not upstream._draining
    finally:
        await upstream.close()


async def test_a_draining_connection_the_server_closes_is_let_go_at_once(client: UpstreamClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        event = b"data: [DONE]\n\n"
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()  # no terminator: the answer never ends properly

    async with RawServer(handler) as server:
        response = await post(client, server.url())
        assert await response.next_chunk() == b"data: [DONE]\n\n"
        response.release_after_end()
        for _ in range(100):  # well before the 2 s drain deadline
            if not client._draining:
                break
            await asyncio.sleep(0.01)
        assert not client._draining and not client._idle.get(pool_key(server))
