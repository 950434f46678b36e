"""`POST /v1/images/generations` on the endpoint skeleton (`http/endpoint.py`): a JSON answer behind an
optional `Idempotency-Key`; images are kept in the media store and answered at its signed URLs."""

from __future__ import annotations

from runapi.http.asgi import Scope
from runapi.http.endpoint import CallEndpoint, response_headers
from runapi.pipeline import ChatStream, Principal, create_images
from runapi.protocols.openai import decode_model_body
from runapi.public_url import public_root
from runapi.tasks import Reply, run_idempotent


class ImagesEndpoint(CallEndpoint):
    path = "/v1/images/generations"

    async def call(self, scope: Scope, headers: dict[bytes, bytes], body: bytes, principal: Principal,
                   started: float, client_request_id: str | None) -> Reply | ChatStream:
        model, raw = decode_model_body(body)
        base_url = public_root(self.gw.server, scope)

        async def answer(generation_id: str | None) -> Reply:
            done = await create_images(self.gw, self.gw.media, principal, model, raw, base_url=base_url,
                                       started=started, client_request_id=client_request_id,
                                       generation_id=generation_id)
            return Reply(200, done.body, response_headers(headers, done.generation_id, done.overhead_ms,
                                                         done.rate_limit))

        # With an Idempotency-Key, a retry gets the first reply back and is not charged again.
        return await run_idempotent(self.gw.tasks.idempotency, principal.account_id, headers, self.path, raw, answer)
