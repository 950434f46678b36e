"""`POST /v1/images/generations`, as a raw ASGI endpoint: parse, authenticate, call the pipeline, answer."""

from __future__ import annotations

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
from runapi.http.chat import response_headers
from runapi.http.errors import error_parts
from runapi.media.runtime import MediaRuntime
from runapi.pipeline.gateway import Gateway
from runapi.pipeline.images import create_images, decode_images_request
from runapi.public_url import public_root
from runapi.tasks.idempotency import Reply, run_idempotent


class ImagesEndpoint:
    def __init__(self, gateway: Gateway, media: MediaRuntime) -> None:
        self.gw = gateway
        self.media = media

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = header_map(scope)
        client_id = headers.get(b"x-client-request-id")
        client_request_id = client_id.decode("latin-1")[:200] if client_id else None
        try:
            body = await read_body(receive, headers, self.gw.settings.server.max_body_bytes)
            principal = await self.gw.auth.authenticate(bearer_token(headers), client_address(scope))
            check_json_content_type(headers)
            model, raw = decode_images_request(body)
            base_url = public_root(self.gw.settings.server, scope)

            async def call(generation_id: str | None) -> Reply:
                done = await create_images(self.gw, self.media, principal, model, raw, base_url=base_url,
                                           started=started, client_request_id=client_request_id,
                                           generation_id=generation_id)
                return Reply(200, done.body, response_headers(headers, done.generation_id, done.overhead_ms,
                                                             done.rate_limit))

            # With an Idempotency-Key, a retry gets the first reply back and is not charged again.
            reply = await run_idempotent(self.gw.engine, self.gw.settings.tasks.idempotency_ttl,
                                         principal.account_id, headers, "/v1/images/generations", raw, call)
            await send_bytes(send, reply.status, reply.body, reply.headers)
        except ClientGone:
            return
        except Exception as exc:  # noqa: BLE001 - every failure becomes an OpenAI-shaped error (500s are logged)
            status, extra, payload = error_parts(exc)
            if client_id is not None and len(client_id) <= 512:
                extra.append((b"x-client-request-id", client_id))
            await send_bytes(send, status, payload, extra)
