"""Reading HTTP/1.1 answers off a raw socket, for tests that write requests byte by byte."""

from __future__ import annotations

import socket
from typing import NamedTuple


class RawResponse(NamedTuple):
    status: int
    head: bytes
    body: bytes


def read_response(sock: socket.socket) -> RawResponse:
    """One answer with a Content-Length, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        assert part, f"connection closed early: {data!r}"
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:"))
    while len(body) < length:
        part = sock.recv(65536)
        assert part, "connection closed mid-body"
        body += part
    return RawResponse(int(lines[0].split()[1]), head, body)
