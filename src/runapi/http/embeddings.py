"""`POST /v1/embeddings` on the endpoint skeleton (`http/endpoint.py`): a JSON answer behind an optional
`Idempotency-Key`; the pipeline checks the model's input schema before anything is held."""

from __future__ import annotations

from runapi.http.asgi import Scope
from runapi.http.endpoint import CallEndpoint, response_headers
from runapi.pipeline import ChatStream, Principal, create_embeddings
from runapi.protocols.openai import decode_model_body
from runapi.tasks import Reply, run_idempotent


class EmbeddingsEndpoint(CallEndpoint):
    path = "/v1/embeddings"

    async def call(self, scope: Scope, headers: dict[bytes, bytes], body: bytes, principal: Principal,
                   started: float, client_request_id: str | None) -> Reply | ChatStream:
        model, raw = decode_model_body(body)

        async def answer(generation_id: str | None) -> Reply:
            done = await create_embeddings(self.gw, principal, model, raw, started=started,
                                           client_request_id=client_request_id, generation_id=generation_id)
            return Reply(200, done.body, response_headers(headers, done.generation_id, done.overhead_ms,
                                                         done.rate_limit))

        # With an Idempotency-Key, a retry gets the first reply back and is not charged again.
        return await run_idempotent(self.gw.tasks.idempotency, principal.account_id, headers, self.path, raw, answer)
