"""`POST /v1/chat/completions`, as a raw ASGI endpoint: parse, authenticate, call the pipeline, relay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from runapi.http.asgi import (
    ClientGone,
    Receive,
    Scope,
    Send,
    bearer_token,
    client_address,
    check_json_content_type,
    header_map,
    read_body,
    send_bytes,
)
from runapi.http.errors import error_parts
from runapi.limits import RateLimitStatus
from runapi.pipeline.auth import Principal
from runapi.pipeline.chat import ChatStream, Completed, complete_chat, open_chat_stream
from runapi.pipeline.chat_request import decode_chat_request
from runapi.pipeline.gateway import Gateway
from runapi.tasks.idempotency import Reply, run_idempotent

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


class ChatCompletionsEndpoint:
    """`POST /v1/chat/completions`; a subclass serves another OpenAI endpoint on the same steps by
    overriding `path`, `decode`, `open_stream` and `complete`."""

    path = "/v1/chat/completions"

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def decode(self, body: bytes) -> tuple[Any, dict[str, Any]]:
        """The typed request (with a `stream` field) and the raw body passed through."""
        return decode_chat_request(body)

    async def open_stream(self, principal: Principal, request: Any, raw: dict[str, Any], *, started: float,
                          client_request_id: str | None) -> ChatStream:
        return await open_chat_stream(self.gw, principal, request, raw, started=started,
                                      client_request_id=client_request_id)

    async def complete(self, principal: Principal, request: Any, raw: dict[str, Any], *, started: float,
                       client_request_id: str | None, generation_id: str | None) -> Completed:
        return await complete_chat(self.gw, principal, request, raw, started=started,
                                   client_request_id=client_request_id, generation_id=generation_id)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = header_map(scope)
        client_id = headers.get(b"x-client-request-id")
        client_request_id = client_id.decode("latin-1")[:200] if client_id else None
        try:
            body = await read_body(receive, headers, self.gw.settings.server.max_body_bytes)
            principal = await self.gw.auth.authenticate(bearer_token(headers), client_address(scope))
            check_json_content_type(headers)
            request, raw = self.decode(body)
            if request.stream:
                stream = await self.open_stream(principal, request, raw, started=started,
                                                client_request_id=client_request_id)
            else:
                async def call(generation_id: str | None) -> Reply:
                    done = await self.complete(principal, request, raw, started=started,
                                               client_request_id=client_request_id, generation_id=generation_id)
                    return Reply(200, done.body, response_headers(headers, done.generation_id, done.overhead_ms,
                                                                 done.rate_limit))

                # With an Idempotency-Key, a retry gets the first reply back and is not charged again.
                reply = await run_idempotent(self.gw.engine, self.gw.settings.tasks.idempotency_ttl,
                                             principal.account_id, headers, self.path, raw, call)
                await send_bytes(send, reply.status, reply.body, reply.headers)
                return
        except ClientGone:
            return
        except Exception as exc:  # noqa: BLE001 - every failure becomes an OpenAI-shaped error (500s are logged)
            status, extra, payload = error_parts(exc)
            if client_id is not None and len(client_id) <= 512:
                extra.append((b"x-client-request-id", client_id))
            await send_bytes(send, status, payload, extra)
            return
        await self._relay(stream, headers, receive, send)

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
