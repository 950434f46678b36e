"""Each answer's head leaves in the same write as its first body bytes (`_HeadWithFirstWrite` in
`runapi.http.server_protocol`), without ever holding bytes back: a lone head goes out at the end of the
event-loop iteration, `100 Continue` reaches a client that waits for it, and closing sends what is held.
The wrapper is checked against a recording stand-in for asyncio's transport; the interim answer and
keep-alive against a real gateway over a raw socket."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from runapi.http.server_protocol import _HeadWithFirstWrite
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.raw_http import read_response


class RecordingTransport:
    """Stands in for an `asyncio.Transport`: records writes and closing."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_the_head_and_the_first_body_write_leave_together() -> None:
    transport = RecordingTransport()
    wrapped: Any = _HeadWithFirstWrite(transport)  # type: ignore[arg-type]
    wrapped.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert transport.writes == []
    wrapped.write(b"body")
    wrapped.write(b"more")
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"more"]
    await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"more"]  # nothing sent twice


async def test_a_lone_head_is_sent_at_the_end_of_the_loop_iteration() -> None:
    transport = RecordingTransport()
    wrapped: Any = _HeadWithFirstWrite(transport)  # type: ignore[arg-type]
    wrapped.write(b"HTTP/1.1 200 OK\r\n\r\n")
    await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]
    wrapped.write(b"later")
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n", b"later"]


async def test_closing_sends_what_is_held_first() -> None:
    transport = RecordingTransport()
    wrapped: Any = _HeadWithFirstWrite(transport)  # type: ignore[arg-type]
    wrapped.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    wrapped.close()
    assert transport.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"] and transport.closed
    assert wrapped.is_closing()  # everything else is the transport's
    await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]


@pytest.fixture(scope="module")
def gateway(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    directory: Path = tmp_path_factory.mktemp("response-writes")
    with run_gateway(sqlite_url(directory), sim_url, circuit_failures=0) as running:
        yield running


def test_a_client_waiting_for_100_continue_gets_it_then_its_answer(gateway: RunningGateway) -> None:
    _, key = gateway.create_account("5")
    body = json.dumps({"model": "glm-4.5-air", "messages": [{"role": "user", "content": "hi"}]}).encode()
    url = urlsplit(gateway.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        for _ in range(2):  # and again on the same connection
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                         b"authorization: Bearer " + key.encode() + b"\r\nexpect: 100-continue\r\n"
                         b"content-length: " + str(len(body)).encode() + b"\r\n\r\n")
            interim = b""
            while b"\r\n\r\n" not in interim:  # the body is only sent once the interim answer is here
                interim += sock.recv(1)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(body)
            status, _, answer = read_response(sock)
            assert status == 200 and json.loads(answer)["object"] == "chat.completion"
