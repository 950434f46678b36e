"""The skeleton every model endpoint shares, as raw ASGI: read the body, authenticate, call the
pipeline, then answer with JSON or relay an SSE stream chunk by chunk, and render any failure in the
endpoint's own protocol. `http/chat.py` and `http/messages.py` fill in the call and the error shape."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from runapi.http.asgi import (
    ClientGone,
    Receive,
    Scope,
    Send,
    bearer_token,
    check_json_content_type,
    client_address,
    header_map,
    read_body,
    send_bytes,
)
from runapi.http.errors import error_parts
from runapi.limits import RateLimitStatus
from runapi.pipeline import ChatStream, Principal
from runapi.runtime import Gateway
from runapi.tasks import Reply

log = logging.getLogger("runapi.http")

SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]


def response_headers(headers: dict[bytes, bytes], generation_id: str, overhead_ms: float,
                    rate_limit: RateLimitStatus | None = None) -> list[tuple[bytes, bytes]]:
    out = [(b"x-runapi-generation-id", generation_id.encode()), (b"x-runapi-overhead-ms", f"{overhead_ms:.3f}".encode())]
    if rate_limit is not None:  # OpenAI's x-ratelimit-* headers
        out += [(name.encode(), value.encode()) for name, value in rate_limit.to_headers().items()]
    client_id = headers.get(b"x-client-request-id")
    if client_id is not None and len(client_id) <= 512:
        out.append((b"x-client-request-id", client_id))
    return out


def log_stream_failure(stream: ChatStream) -> None:
    """One warning for an upstream that failed after the stream started: what happened, and that the
    client was told (an error event ended its stream) and is not charged."""
    record = stream.record
    via = f" via {record.deployment.provider_name} ({record.deployment.upstream_model})" if record.deployment else ""
    log.warning("%s: %s%s failed mid-stream: %s. The client got an error event; nothing is charged.",
                stream.generation_id, record.entry.id, via, stream.error,
                extra={"fields": {"generation_id": stream.generation_id, "model": record.entry.id,
                                  "event": "upstream_failed_mid_stream"}})


class CallEndpoint:
    """One model endpoint: `call()` runs the pipeline for an authenticated request and returns a reply
    (sent as is) or a stream (relayed); `error_parts()` renders a failure (OpenAI's shape by default)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def call(self, scope: Scope, headers: dict[bytes, bytes], body: bytes, principal: Principal,
                   started: float, client_request_id: str | None) -> Reply | ChatStream:
        raise NotImplementedError

    def error_parts(self, exc: Exception, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return error_parts(exc)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = header_map(scope)
        client_id = headers.get(b"x-client-request-id")
        client_request_id = client_id.decode("latin-1")[:200] if client_id else None
        body = b""
        try:
            body = await read_body(receive, headers, self.gw.server.max_body_bytes)
            principal = await self.gw.auth.authenticate(bearer_token(headers), client_address(scope))
            check_json_content_type(headers)
            outcome = await self.call(scope, headers, body, principal, started, client_request_id)
        except ClientGone:
            return
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error in the endpoint's shape (500s are logged)
            status, extra, payload = self.error_parts(exc, body)
            if client_id is not None and len(client_id) <= 512:
                extra.append((b"x-client-request-id", client_id))
            await send_bytes(send, status, payload, extra)
            return
        if isinstance(outcome, Reply):
            await send_bytes(send, outcome.status, outcome.body, outcome.headers)
            return
        await self._relay(outcome, headers, receive, send)

    async def _relay(self, stream: ChatStream, headers: dict[bytes, bytes], receive: Receive, send: Send) -> None:
        """Send the stream chunk by chunk; if the client leaves, cancel the upstream and settle.

        The stream is pumped in this task (no hop to another task before the first byte); a watcher
        task waits for the client's disconnect and then cancels this task, but only while it pumps."""
        start_headers = SSE_HEADERS + response_headers(headers, stream.generation_id, stream.record.overhead_ms(),
                                                      stream.record.rate_limit)
        relaying = asyncio.current_task()
        assert relaying is not None
        pumping = True
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            if pumping:
                relaying.cancel()

        watching = asyncio.ensure_future(watch())
        disconnected = False
        try:
            # The head is sent in the same task step as the first events: one write for both.
            await send({"type": "http.response.start", "status": 200, "headers": start_headers})
            async for data in stream.events():  # the last frames come once the stream is finished (settled)
                await send({"type": "http.response.body", "body": data, "more_body": not stream.finished})
            if not stream.finished:
                if stream.error is not None:
                    log_stream_failure(stream)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            disconnected = gone
            if not gone or relaying.uncancel():
                raise  # cancelled from outside (the server stopping), maybe as well: still settled below
        except OSError:  # the server's transport says the client is gone
            disconnected = not stream.finished
        except Exception:
            log.exception("stream relay failed for %s", stream.generation_id)
            with contextlib.suppress(Exception):  # end the response if it can still be ended
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            pumping = False
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            await stream.close(disconnected=disconnected)
