"""`POST /v1/chat/completions`: the chat pipeline on the endpoint skeleton (`http/endpoint.py`)."""

from __future__ import annotations

from runapi.http.asgi import Scope
from runapi.http.endpoint import CallEndpoint, response_headers
from runapi.pipeline import ChatStream, Principal, complete_chat, open_chat_stream
from runapi.protocols.openai import decode_chat_request
from runapi.tasks import Reply, run_idempotent


class ChatCompletionsEndpoint(CallEndpoint):
    async def call(self, scope: Scope, headers: dict[bytes, bytes], body: bytes, principal: Principal,
                   started: float, client_request_id: str | None) -> Reply | ChatStream:
        request, raw = decode_chat_request(body)
        if request.stream:
            return await open_chat_stream(self.gw, principal, request, raw, started=started,
                                          client_request_id=client_request_id)

        async def call(generation_id: str | None) -> Reply:
            done = await complete_chat(self.gw, principal, request, raw, started=started,
                                       client_request_id=client_request_id, generation_id=generation_id)
            return Reply(200, done.body, response_headers(headers, done.generation_id, done.overhead_ms,
                                                         done.rate_limit))

        # With an Idempotency-Key, a retry gets the first reply back and is not charged again.
        return await run_idempotent(self.gw.tasks.idempotency, principal.account_id, headers, "/v1/chat/completions",
                                    raw, call)
