"""Slow-loris clients are cut off: a request head must arrive within `[server] header_timeout` of the
request's first byte (trickling does not extend it), a request body may not stall for longer
than `body_timeout`, and once `body_timeout` has passed it must average `min_body_rate` bytes/s.
Raw sockets against a real gateway on loopback, run with the protocol `runapi serve` ships
(`runapi.http.server_protocol`), with short deadlines."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.raw_http import read_response

HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
MIN_BODY_RATE = 20  # bytes/s; the steady trickle below averages about 50
CHAT = "/v1/chat/completions"
BODY = json.dumps({"model": "glm-4.5-air", "messages": [{"role": "user", "content": "hello"}]}).encode()


@pytest.fixture(scope="module")
def strict_gateway(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    directory: Path = tmp_path_factory.mktemp("slow-clients")
    with run_gateway(sqlite_url(directory), sim_url, circuit_failures=0, header_timeout=HEADER_TIMEOUT,
                     body_timeout=BODY_TIMEOUT, min_body_rate=MIN_BODY_RATE) as running:
        yield running


def connect(gw: RunningGateway) -> socket.socket:
    url = urlsplit(gw.base_url)
    return socket.create_connection((url.hostname, url.port), timeout=10)


def read_until_closed(sock: socket.socket, limit: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (fails if it does not within `limit`)."""
    sock.settimeout(limit)
    data = b""
    while True:
        try:
            part = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not part:
            return data
        data += part


def assert_408(data: bytes) -> None:
    assert data.startswith(b"HTTP/1.1 408 "), data
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower() and b"connection: close" in head.lower()
    assert json.loads(body) == {"error": {"message": "The request headers were not received in time.",
                                          "type": "invalid_request_error", "param": None, "code": "request_timeout"}}


def assert_untouched(gw: RunningGateway, account: str, credit: str) -> None:
    assert gw.balance(account) == Decimal(credit)
    assert [entry["kind"] for entry in gw.ledger(account)] == ["topup"]
    assert gw.admin.get("/admin/generations", params={"account_id": account}).raise_for_status().json()["data"] == []


def test_half_request_line_gets_408_and_is_closed_at_the_deadline(strict_gateway: RunningGateway) -> None:
    with connect(strict_gateway) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/comp")
        data = read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert_408(data)
    assert HEADER_TIMEOUT - 0.05 <= elapsed < HEADER_TIMEOUT + 1.0, elapsed


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(strict_gateway: RunningGateway) -> None:
    with connect(strict_gateway) as sock:
        started = time.monotonic()
        data = read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert_408(data)
    assert HEADER_TIMEOUT - 0.05 <= elapsed < HEADER_TIMEOUT + 1.0, elapsed


def test_trickled_header_bytes_do_not_extend_the_deadline(strict_gateway: RunningGateway) -> None:
    """One header byte every 0.1 s would go on forever; the deadline counts from the request's start."""
    host = urlsplit(strict_gateway.base_url).netloc
    with connect(strict_gateway) as sock:
        started = time.monotonic()
        sock.sendall(f"GET /health HTTP/1.1\r\nhost: {host}\r\nx-slow: ".encode())
        sent = 0
        while time.monotonic() - started < 10:
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:  # the server answered (or closed): stop sending
                break
            sock.sendall(b"a")
            sent += 1
        data = read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert_408(data)
    assert sent >= 3  # bytes kept arriving, and still
    assert elapsed < HEADER_TIMEOUT + 1.0, elapsed


def test_keep_alive_requests_each_get_their_own_deadline(strict_gateway: RunningGateway) -> None:
    """A head sent in pieces within the deadline is served; the next request on the same connection,
    well past the first request's deadline, gets a fresh one and is served too."""
    host = urlsplit(strict_gateway.base_url).netloc
    request = f"GET /health HTTP/1.1\r\nhost: {host}\r\n\r\n".encode()
    with connect(strict_gateway) as sock:
        for piece in (request[:5], request[5:20], request[20:]):
            sock.sendall(piece)
            time.sleep(0.1)
        assert read_response(sock)[0] == 200
        time.sleep(HEADER_TIMEOUT + 0.3)  # idle between requests: uvicorn's keep-alive (5 s) governs
        sock.sendall(request[:10])
        time.sleep(0.2)
        sock.sendall(request[10:])
        assert read_response(sock)[0] == 200
        sock.sendall(request)
        assert read_response(sock)[0] == 200


def test_a_stalled_body_is_closed_and_nothing_is_charged(strict_gateway: RunningGateway) -> None:
    account, key = strict_gateway.create_account("1")
    host = urlsplit(strict_gateway.base_url).netloc
    head = (f"POST {CHAT} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {key}\r\n"
            f"content-type: application/json\r\ncontent-length: 100\r\n\r\n").encode()
    with connect(strict_gateway) as sock:
        sock.sendall(head + BODY[:10])
        started = time.monotonic()
        data = read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert BODY_TIMEOUT - 0.05 <= elapsed < BODY_TIMEOUT + 1.5, elapsed
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert json.loads(data.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    time.sleep(0.2)  # nothing is written later either
    assert_untouched(strict_gateway, account, "1")


def test_a_slow_body_that_keeps_moving_is_served(strict_gateway: RunningGateway) -> None:
    """The body deadline is between reads, not for the whole body: 2 s of steady trickle is fine."""
    _, key = strict_gateway.create_account("1")
    host = urlsplit(strict_gateway.base_url).netloc
    head = (f"POST {CHAT} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {key}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(BODY)}\r\n\r\n").encode()
    step = -(-len(BODY) // 10)
    with connect(strict_gateway) as sock:
        sock.sendall(head)
        for i in range(0, len(BODY), step):
            time.sleep(BODY_TIMEOUT * 0.4)
            sock.sendall(BODY[i : i + step])
        status, _, body = read_response(sock)
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"]


def test_a_body_trickled_too_slowly_to_ever_stall_is_still_cut_off(strict_gateway: RunningGateway) -> None:
    """A byte every 0.3 s never stalls for `body_timeout` (0.5 s), but averages 3 bytes/s against the
    floor of 20: it is cut off soon after `body_timeout`, not when its 100 bytes would have arrived (30 s)."""
    account, key = strict_gateway.create_account("1")
    host = urlsplit(strict_gateway.base_url).netloc
    head = (f"POST {CHAT} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {key}\r\n"
            f"content-type: application/json\r\ncontent-length: 100\r\n\r\n").encode()
    with connect(strict_gateway) as sock:
        sock.sendall(head)
        started = time.monotonic()
        data = b""
        for i in range(100):
            readable, _, _ = select.select([sock], [], [], 0.3)
            if readable:
                data = read_until_closed(sock)
                break
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
        elapsed = time.monotonic() - started
    assert elapsed < 3.0, elapsed
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert json.loads(data.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    assert_untouched(strict_gateway, account, "1")


def test_many_idle_slow_connections_are_closed_while_others_are_served(strict_gateway: RunningGateway) -> None:
    host = urlsplit(strict_gateway.base_url).netloc
    idle: list[socket.socket] = []
    try:
        started = time.monotonic()
        for i in range(50):
            sock = connect(strict_gateway)
            if i % 2:  # half send part of a head, half nothing at all
                sock.sendall(f"POST {CHAT} HTTP/1.1\r\nhost: {host}\r\nx-a: ".encode())
            idle.append(sock)
        with httpx.Client(base_url=strict_gateway.base_url, timeout=5) as client:
            while time.monotonic() - started < HEADER_TIMEOUT + 0.5:
                t0 = time.monotonic()
                assert client.get("/health").status_code == 200
                assert time.monotonic() - t0 < 0.5
                time.sleep(0.05)
        deadline = started + HEADER_TIMEOUT + 2.0
        for sock in idle:
            data = read_until_closed(sock, limit=max(0.01, deadline - time.monotonic()))
            assert_408(data)
        assert time.monotonic() < deadline
    finally:
        for sock in idle:
            sock.close()


def test_a_body_at_one_byte_a_second_is_cut_off_after_one_body_timeout(sim_url: str, tmp_path: Path) -> None:
    """Issue 20.9: with the default rate floor (1024 bytes/s) a body trickled at a few bytes a second was
    looked at only every `body_timeout`, so it was closed after about twice that. Now it is closed once
    its average falls below the floor, a moment after the first `body_timeout`."""
    body_timeout = 2.0
    with run_gateway(sqlite_url(tmp_path), sim_url, circuit_failures=0, body_timeout=body_timeout,
                     min_body_rate=1024) as gw:
        host = urlsplit(gw.base_url).netloc
        head = (f"POST {CHAT} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
                f"content-length: 1000\r\n\r\n").encode()
        with connect(gw) as sock:
            sock.sendall(head)
            started = time.monotonic()
            data = b""
            while time.monotonic() - started < 4 * body_timeout:
                readable, _, _ = select.select([sock], [], [], 0.2)  # 5 bytes/s: it never stalls
                if readable:
                    data = read_until_closed(sock)
                    break
                try:
                    sock.sendall(b" ")
                except (BrokenPipeError, ConnectionResetError):
                    break
            elapsed = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert body_timeout - 0.05 <= elapsed < 1.5 * body_timeout, elapsed
