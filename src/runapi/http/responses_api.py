"""The Responses API: `POST /v1/responses` (a raw ASGI endpoint, JSON or SSE, like chat's) and the stored
responses of the caller's own account: `GET /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`,
`DELETE /v1/responses/{id}`. Another account's response is a 404, as one that does not exist."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runapi.http.account_api import principal_of
from runapi.http.asgi import Scope
from runapi.http.endpoint import CallEndpoint, response_headers
from runapi.http.responses import json_response
from runapi.pipeline import (
    ChatStream,
    Principal,
    complete_responses,
    open_responses_stream,
    prepare_responses_call,
)
from runapi.protocols.responses import ResponseContext, response_object
from runapi.query import choice_param, int_param, text_param
from runapi.runtime import Gateway
from runapi.services import StoredResponse
from runapi.tasks import Reply, run_idempotent


class ResponsesEndpoint(CallEndpoint):
    """`POST /v1/responses`: the Responses pipeline on the endpoint skeleton (JSON or SSE, like chat's)."""

    async def call(self, scope: Scope, headers: dict[bytes, bytes], body: bytes, principal: Principal,
                   started: float, client_request_id: str | None) -> Reply | ChatStream:
        call = await prepare_responses_call(self.gw, principal, body)
        if call.request.stream:
            return await open_responses_stream(self.gw, principal, call, started=started,
                                               client_request_id=client_request_id)

        async def answer(generation_id: str | None) -> Reply:
            done = await complete_responses(self.gw, principal, call, started=started,
                                            client_request_id=client_request_id, generation_id=generation_id)
            return Reply(200, done.body, response_headers(headers, done.generation_id, done.overhead_ms,
                                                         done.rate_limit))

        # With an Idempotency-Key, a retry gets the first reply back and is not charged again.
        return await run_idempotent(self.gw.tasks.idempotency, principal.account_id, headers, "/v1/responses",
                                    call.chat, answer)


def stored_response_json(stored: StoredResponse) -> dict[str, Any]:
    """A stored response as `GET /v1/responses/{id}` shows it: the object the client was answered with."""
    ctx = ResponseContext(stored.id, int(stored.created_at.timestamp()), stored.model, stored.params)
    return response_object(ctx, stored.status, stored.output_items, stored.usage)


async def _own_response(request: Request) -> tuple[Gateway, str, StoredResponse]:
    gw: Gateway = request.app.state.gateway
    principal = await principal_of(request)
    stored = await gw.responses.own(principal.account_id, request.path_params["response_id"])
    return gw, principal.account_id, stored


async def get_response(request: Request) -> Response:
    _, _, stored = await _own_response(request)
    return json_response(stored_response_json(stored))


async def list_input_items(request: Request) -> Response:
    """The response's input items, newest first by default (`order`, `after` an item ID, `limit` 1-100)."""
    params = request.query_params
    limit = int_param(params, "limit", 20, 1, 100)
    order = choice_param(params, "order", ("asc", "desc")) or "desc"
    after = text_param(params, "after")
    _, _, stored = await _own_response(request)
    items = stored.input_items if order == "asc" else stored.input_items[::-1]
    if after is not None:
        ids = [item.get("id") for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    page = items[:limit]
    return json_response({"object": "list", "data": page, "first_id": page[0].get("id") if page else None,
                          "last_id": page[-1].get("id") if page else None, "has_more": len(items) > limit})


async def delete_response(request: Request) -> Response:
    gw, account_id, stored = await _own_response(request)
    await gw.responses.delete(account_id, stored.id)
    return json_response({"id": stored.id, "object": "response.deleted", "deleted": True})


routes = [
    Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
    Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
]
