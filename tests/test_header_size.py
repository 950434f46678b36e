"""Issue 20.3: request heads are capped in size. A request line plus headers over `[server]
max_header_bytes` (32 KiB by default) gets 431 at once and the connection is closed, before the parser
copies the bytes around; eight connections streaming endless headers cannot stall `/health`.
Raw sockets against a real gateway on loopback, with the protocol `runapi serve` ships."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.raw_http import read_response

LIMIT = 32 * 1024  # `[server] max_header_bytes` by default
STREAM_BUDGET = 64 * 1024 * 1024  # an endless header, as far as the test goes


@pytest.fixture(scope="module")
def gateway(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    directory: Path = tmp_path_factory.mktemp("header-size")
    # A long head deadline: only the size cap may stop the endless heads below.
    with run_gateway(sqlite_url(directory), sim_url, circuit_failures=0, header_timeout=120.0) as running:
        yield running


def connect(gw: RunningGateway) -> socket.socket:
    url = urlsplit(gw.base_url)
    return socket.create_connection((url.hostname, url.port), timeout=30)


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            part = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not part:
            return data
        data += part


def assert_431(data: bytes) -> None:
    assert data.startswith(b"HTTP/1.1 431 "), data[:200]
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"] == {"message": "The request line and headers are too large.",
                                         "type": "invalid_request_error", "param": None,
                                         "code": "request_header_fields_too_large"}


def test_a_head_over_the_limit_gets_431_and_the_connection_closes(gateway: RunningGateway) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + b"a" * LIMIT + b"\r\n\r\n")
        assert_431(read_until_closed(sock))


def test_a_long_url_counts_too(gateway: RunningGateway) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"GET /health?" + b"a" * LIMIT + b" HTTP/1.1\r\nhost: x\r\n\r\n")
        assert_431(read_until_closed(sock))


def test_heads_under_the_limit_and_large_bodies_are_served(gateway: RunningGateway) -> None:
    _, key = gateway.create_account("1")
    headers = {f"x-filler-{i}": "b" * 1000 for i in range(LIMIT // 1100)}  # about 29 KiB of headers
    body = {"model": "glm-4.5-air", "messages": [{"role": "user", "content": "c" * 200_000}], "max_tokens": 5}
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        assert client.get("/health", headers=headers).status_code == 200
        response = client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text  # a body's bytes are not head bytes


def test_an_oversized_pipelined_head_lets_the_answer_in_progress_finish(gateway: RunningGateway) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
                     b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (2 * LIMIT) + b"\r\n\r\n")
        status, _, _ = read_response(sock)
        assert status == 200
        rest = read_until_closed(sock)
        assert rest == b"" or rest.startswith(b"HTTP/1.1 431 "), rest[:200]


def test_endless_headers_on_eight_connections_are_cut_off_while_health_answers(gateway: RunningGateway) -> None:
    sent: list[int] = []
    cut_off: list[bool] = []
    started = threading.Barrier(9)

    def stream_endless_header() -> None:
        total = 0
        chunk = b"a" * 65536
        with connect(gateway) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ")
            started.wait()
            try:
                while total < STREAM_BUDGET:
                    sock.sendall(chunk)
                    total += len(chunk)
                cut_off.append(False)
            except (BrokenPipeError, ConnectionResetError):
                cut_off.append(True)
            sent.append(total)

    attackers = [threading.Thread(target=stream_endless_header, daemon=True) for _ in range(8)]
    for thread in attackers:
        thread.start()
    started.wait()
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        statuses = [client.get("/health").status_code for _ in range(20)]
    for thread in attackers:
        thread.join(timeout=60)
    assert statuses == [200] * 20
    assert cut_off == [True] * 8, sent  # the gateway closed every one of them, long before its budget
