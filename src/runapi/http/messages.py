"""`POST /v1/messages` and `POST /v1/messages/count_tokens` (Anthropic-compatible), as raw ASGI endpoints.

Same key (`x-api-key` or `Authorization: Bearer`), limits, holds and billing as chat
completions; errors in Anthropic's shape and words: `{"type": "error", "error": {"type", "message"}}`
(see `pipeline.messages_errors`). `?beta=true` (how Claude Code and the SDKs' beta clients call)
is accepted and passed on to Anthropic-protocol upstreams.
"""

from __future__ import annotations

import msgspec

from runapi.errors import GatewayError, NotFound
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
from runapi.http.endpoint import CallEndpoint, response_headers
from runapi.http.errors import error_parts
from runapi.pipeline import (
    ChatStream,
    Principal,
    complete_messages,
    count_message_tokens,
    open_messages_stream,
    prepare_messages_call,
)
from runapi.protocols.anthropic import anthropic_error
from runapi.providers import FORWARDED_HEADERS
from runapi.runtime import Gateway
from runapi.tasks import Reply

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def anthropic_error_parts(exc: BaseException, model: str | None = None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, headers, body) of an error in Anthropic's shape and words; the headers as for chat.
    `model`: the request's, for Anthropic's "model: <name>" wording of an unknown model."""
    status, headers, payload = error_parts(exc)
    message = _decode(payload)["error"]["message"]
    kind = "api_error"
    if isinstance(exc, GatewayError):
        status, kind, message = anthropic_error(exc, status, message, model)
    return status, headers, _encode({"type": "error", "error": {"type": kind, "message": message}})


def beta_query(scope: Scope) -> bool:
    """Whether the client called with `?beta=true` (other query parameters are ignored)."""
    return b"beta=true" in scope.get("query_string", b"").split(b"&")


def _model_of(body: bytes) -> str | None:
    """The request's `model`, for an error's wording (None when the body has none)."""
    try:
        model = _decode(body).get("model")
    except (msgspec.DecodeError, AttributeError):
        return None
    return model if isinstance(model, str) else None


def _forwarded(headers: dict[bytes, bytes]) -> dict[str, str]:
    return {name: headers[name.encode()].decode("latin-1") for name in FORWARDED_HEADERS if name.encode() in headers}


class MessagesEndpoint(CallEndpoint):
    """`/v1/messages`: the Messages pipeline on the endpoint skeleton, errors in Anthropic's shape."""

    async def call(self, scope: Scope, headers: dict[bytes, bytes], body: bytes, principal: Principal,
                   started: float, client_request_id: str | None) -> Reply | ChatStream:
        call = prepare_messages_call(body, _forwarded(headers), beta=beta_query(scope))
        if call.body.get("stream"):
            return await open_messages_stream(self.gw, principal, call, started=started,
                                              client_request_id=client_request_id)
        done = await complete_messages(self.gw, principal, call, started=started, client_request_id=client_request_id)
        return Reply(200, done.body, response_headers(headers, done.generation_id, done.overhead_ms, done.rate_limit))

    def error_parts(self, exc: Exception, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return anthropic_error_parts(exc, _model_of(body) if isinstance(exc, NotFound) else None)


class CountTokensEndpoint:
    """`/v1/messages/count_tokens`: free; the upstream's count for Anthropic models, else an estimate."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope)
        body = b""
        try:
            body = await read_body(receive, headers, self.gw.settings.server.max_body_bytes)
            await self.gw.auth.authenticate(bearer_token(headers), client_address(scope))
            check_json_content_type(headers)
            count = await count_message_tokens(self.gw, body, _forwarded(headers), beta=beta_query(scope))
        except ClientGone:
            return
        except GatewayError as exc:
            status, extra, payload = anthropic_error_parts(exc, _model_of(body) if isinstance(exc, NotFound) else None)
            await send_bytes(send, status, payload, extra)
            return
        await send_bytes(send, 200, _encode({"input_tokens": count}), [])
