"""`POST /v1/chat/completions`: the chat pipeline on the endpoint skeleton (`http/endpoint.py`).

A subclass serves another OpenAI endpoint with chat's steps (a JSON answer behind an optional
`Idempotency-Key`, or a stream) by overriding `path`, `decode`, `open_stream` and `complete`."""

from __future__ import annotations

from typing import Any

from runapi.http.asgi import Scope
from runapi.http.endpoint import CallEndpoint, response_headers
from runapi.pipeline import (
    ChatStream,
    Completed,
    Principal,
    complete_chat,
    open_chat_stream,
)
from runapi.protocols.openai import decode_chat_request
from runapi.tasks import Reply, run_idempotent


class ChatCompletionsEndpoint(CallEndpoint):
    path = "/v1/chat/completions"

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

    async def call(self, scope: Scope, headers: dict[bytes, bytes], body: bytes, principal: Principal,
                   started: float, client_request_id: str | None) -> Reply | ChatStream:
        request, raw = self.decode(body)
        if request.stream:
            return await self.open_stream(principal, request, raw, started=started,
                                          client_request_id=client_request_id)

        async def answer(generation_id: str | None) -> Reply:
            done = await self.complete(principal, request, raw, started=started,
                                       client_request_id=client_request_id, generation_id=generation_id)
            return Reply(200, done.body, response_headers(headers, done.generation_id, done.overhead_ms,
                                                         done.rate_limit))

        # With an Idempotency-Key, a retry gets the first reply back and is not charged again.
        return await run_idempotent(self.gw.tasks.idempotency, principal.account_id, headers, self.path, raw, answer)
