"""Small raw-ASGI helpers for the hot path: bounded body reads and one-shot responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import ClientDisconnect, Request

from runapi.errors import AuthError, InvalidRequest, PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ClientGone(Exception):
    """The client disconnected before the request body arrived."""


def header_map(scope: Scope) -> dict[bytes, bytes]:
    return {name: value for name, value in scope["headers"]}


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    """The whole request body, refusing more than `limit` bytes with 413 (early, from Content-Length)."""
    declared = headers.get(b"content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"The request body is larger than the {limit}-byte limit.")
        except ValueError as exc:
            raise InvalidRequest("Invalid Content-Length header.") from exc
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than the {limit}-byte limit.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def bounded_body(request: Request, limit: int) -> bytes:
    """A Starlette route's request body, refusing more than `limit` bytes with 413 as `read_body` does
    (from Content-Length, then while it streams: a chunked body is never read past the limit)."""
    try:
        return await read_body(request.receive, header_map(request.scope), limit)
    except ClientGone as exc:
        raise ClientDisconnect() from exc


def client_address(scope: Scope) -> str | None:
    """The client's IP address (uvicorn puts a trusted proxy's X-Forwarded-For there), for the auth guard."""
    client = scope.get("client")
    return str(client[0]) if client else None


def bearer_token(headers: dict[bytes, bytes]) -> str:
    """The API key from `Authorization: Bearer` or (Anthropic style) `x-api-key`."""
    value = headers.get(b"authorization")
    if value is not None:
        scheme, _, token = value.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            raise AuthError("Use `Authorization: Bearer <key>`.")
        return token.strip()
    return headers.get(b"x-api-key", b"").decode("latin-1").strip()


def check_json_content_type(headers: dict[bytes, bytes]) -> None:
    content_type = headers.get(b"content-type")
    if content_type is not None and b"json" not in content_type.lower():
        error = InvalidRequest("Send the body as JSON with `Content-Type: application/json`.",
                               code="unsupported_media_type")
        error.status = 415
        raise error


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]],
                     content_type: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
