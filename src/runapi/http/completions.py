"""`POST /v1/completions` (legacy text completions): the chat endpoint on the text pipeline."""

from __future__ import annotations

from typing import Any

from runapi.http.chat import ChatCompletionsEndpoint
from runapi.pipeline import (
    ChatStream,
    Completed,
    Principal,
    complete_text,
    open_text_stream,
)
from runapi.protocols.openai import decode_completion_request


class CompletionsEndpoint(ChatCompletionsEndpoint):
    path = "/v1/completions"

    def decode(self, body: bytes) -> tuple[Any, dict[str, Any]]:
        return decode_completion_request(body)

    async def open_stream(self, principal: Principal, request: Any, raw: dict[str, Any], *, started: float,
                          client_request_id: str | None) -> ChatStream:
        return await open_text_stream(self.gw, principal, request, raw, started=started,
                                      client_request_id=client_request_id)

    async def complete(self, principal: Principal, request: Any, raw: dict[str, Any], *, started: float,
                       client_request_id: str | None, generation_id: str | None) -> Completed:
        return await complete_text(self.gw, principal, request, raw, started=started,
                                   client_request_id=client_request_id, generation_id=generation_id)
