"""`POST /v1/messages` (Anthropic Messages) for every catalog model, on the chat pipeline.

The same steps as chat completions — resolve, admit, hold, fail over, settle — reused from
`pipeline.chat`. Per attempt, an upstream that takes Messages bodies (`NativeMessages`: the
Anthropic adapter) gets the client's body as is, with `anthropic-version` / `anthropic-beta`
(and `?beta=true` when the client called that); any other upstream gets its chat-completions
translation, and the answer is translated back. Errors take Anthropic's words (`protocols.anthropic.errors`).
Usage is reported in Anthropic's semantics (`input_tokens` exclude cache reads and writes).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Hashable, Mapping
from decimal import Decimal
from typing import Any, cast

import msgspec

from runapi.errors import InvalidRequest, UpstreamError, UpstreamRejected
from runapi.money import Usage, cost_nanos, estimate_tokens, nanos_to_usd
from runapi.pipeline.auth import Principal
from runapi.pipeline.call_services import CallServices, known_model
from runapi.pipeline.chat import ChatStream, Completed, begin_call, fail_call
from runapi.pipeline.failover import first_answer
from runapi.pipeline.metering import CallRecord
from runapi.pipeline.reservation import Reservation
from runapi.pipeline.routing import attempt_order
from runapi.protocols.anthropic import (
    ChatToMessagesEvents,
    CountTokensRequest,
    MessagesRequest,
    decode_messages_request,
    error_event,
    error_type,
    messages_usage_json,
    to_chat_request,
    to_message,
)
from runapi.protocols.openai import (
    ChatRequest,
    Message,
    UpstreamChunk,
    UpstreamReply,
    prompt_bytes,
)
from runapi.providers import FORWARDED_HEADERS, Deployment, NativeMessages
from runapi.transport import frame, parse_sse_event

_encode = msgspec.json.Encoder(decimal_format="number").encode
_decode = msgspec.json.Decoder().decode

MESSAGE_STOP = frame(b'{"type":"message_stop"}', "message_stop")


@functools.cache
def _is_native(kind: Hashable) -> bool:
    """Whether a provider class takes Messages bodies (`NativeMessages`): asked once per class, as a
    runtime protocol check walks every member (20 µs a call)."""
    return isinstance(kind, type) and issubclass(kind, NativeMessages)


def native_provider(provider: object) -> NativeMessages | None:
    """`provider` as a `NativeMessages`, or None when it speaks chat completions only."""
    return cast(NativeMessages, provider) if _is_native(cast(Hashable, type(provider))) else None


class MessagesCall:
    """One `/v1/messages` request: the client's body, its chat translation and the typed view for the hold.

    `chat` is None when the body uses blocks only Anthropic upstreams understand; such a call
    fails with `translation_error` if it reaches any other upstream. `beta`: the client called
    `/v1/messages?beta=true`, which native upstreams are called with too.
    """

    __slots__ = ("beta", "body", "chat", "request", "headers", "translation_error")

    def __init__(self, body: dict[str, Any], headers: Mapping[str, str], *, beta: bool = False) -> None:
        self.body = body
        self.beta = beta
        self.headers = {name: headers[name] for name in FORWARDED_HEADERS if headers.get(name)}
        self.translation_error: InvalidRequest | None = None
        try:
            self.chat: dict[str, Any] | None = to_chat_request(body)
            self.request = msgspec.convert(self.chat, ChatRequest)
        except (InvalidRequest, msgspec.ValidationError) as exc:
            self.translation_error = exc if isinstance(exc, InvalidRequest) else InvalidRequest(str(exc))
            self.chat = None
            # For the hold: the whole body's JSON stands in for the prompt (an overestimate).
            stand_in = Message(role="user", content=_encode(body.get("messages", [])).decode())
            self.request = ChatRequest(model=str(body.get("model")), messages=[stand_in],
                                       max_tokens=body.get("max_tokens"), stream=bool(body.get("stream")))

    def chat_body(self) -> dict[str, Any]:
        if self.chat is None:
            assert self.translation_error is not None
            raise self.translation_error
        return self.chat


def prepare_messages_call(body: bytes, headers: Mapping[str, str], *, beta: bool = False) -> MessagesCall:
    """Validate a `/v1/messages` body; raises `InvalidRequest` naming the bad field."""
    _, raw = decode_messages_request(body, MessagesRequest)
    return MessagesCall(raw, headers, beta=beta)


def _message_parts(message: dict[str, Any]) -> int:
    """Estimated output tokens of a message without usage: its text bytes / 3."""
    size = sum(len(str(block.get("text") or block.get("thinking") or "").encode())
               for block in message.get("content") or () if isinstance(block, dict))
    return estimate_tokens(size)


async def complete_messages(gw: CallServices, principal: Principal, call: MessagesCall, *, started: float,
                            client_request_id: str | None = None, generation_id: str | None = None) -> Completed:
    """One non-streaming Messages call, settled (durably) before it is returned."""
    record, reservation, order = await begin_call(gw, principal, call.request, started, client_request_id,
                                                  generation_id)

    async def attempt(deployment: Deployment) -> tuple[UpstreamReply, bool]:
        provider = gw.provider_for(deployment)
        native = native_provider(provider)
        if native is not None:
            return await native.complete_native(call.body, deployment, call.headers, beta=call.beta), True
        return await provider.complete(call.chat_body(), deployment), False

    try:
        reply, native = await first_answer(gw, record, order, attempt)
    except BaseException as exc:  # nothing answered, nothing charged
        await fail_call(gw, record, reservation, exc)
        raise
    message = reply.body if native else to_message(reply.body)
    usage = reply.usage or record.estimated_usage(_message_parts(message))
    cost = nanos_to_usd(cost_nanos(usage, record.entry.pricing))
    message.update(id=record.generation_id, model=record.entry.id, usage=messages_usage_json(usage, cost))
    settlement = record.settlement("succeeded", usage, estimated=reply.usage is None,
                                   cap=reservation.cap_charge)
    await gw.settlements.submit(settlement, reservation)
    return Completed(_encode(message), record.generation_id, record.overhead_ms(), record.rate_limit)


class MessagesStream(ChatStream):
    """A streaming Messages call: `ChatStream`'s failover, relay and settlement, Anthropic's events.

    From a native upstream the events are relayed with the message's id and model replaced and
    `cost` added to the final usage; from any other, chat chunks become Messages events. The
    closing `message_stop` is sent only once the call is settled.
    """

    def __init__(self, gw: CallServices, record: CallRecord, reservation: Reservation, order: list[Deployment],
                 call: MessagesCall) -> None:
        super().__init__(gw, record, reservation, order, call.request, {})
        self.call = call
        self.native = False
        self._writer: ChatToMessagesEvents | None = None

    def _upstream_stream(self, deployment: Deployment) -> AsyncIterator[list[UpstreamChunk]]:
        provider = self.gw.provider_for(deployment)
        native = native_provider(provider)
        self.native = native is not None  # the last attempt is the one that answers
        if native is not None:
            return native.stream_native(self.call.body, deployment, self.call.headers, beta=self.call.beta)
        return provider.stream(self.call.chat_body(), deployment)

    def _events_writer(self) -> ChatToMessagesEvents:
        if self._writer is None:
            self._writer = ChatToMessagesEvents(self.generation_id, self.record.entry.id)
        return self._writer

    def _cost(self, usage: Usage) -> Decimal:
        return nanos_to_usd(cost_nanos(usage, self.record.entry.pricing))

    def _relay(self, chunks: list[UpstreamChunk]) -> bytes:
        return b"".join([self._event(chunk) for chunk in chunks])

    def _event(self, chunk: UpstreamChunk) -> bytes:
        """The Messages events for one chunk (b"" for none)."""
        self._track(chunk)
        if not self.native:
            return self._events_writer().feed_payload(chunk.payload)
        if not chunk.payload.startswith((b"event: message_start", b"event: message_delta", b"event: message_stop")):
            return chunk.payload
        event = parse_sse_event(chunk.payload.strip())
        if event is None or event.event == "message_stop":
            return b""  # sent by `_final_frames`, after the settlement
        data = _decode(event.data)
        if event.event == "message_start" and isinstance(data.get("message"), dict):
            data["message"].update(id=self.generation_id, model=self.record.entry.id)
        elif event.event == "message_delta" and chunk.usage is not None:
            data["usage"] = messages_usage_json(chunk.usage, self._cost(chunk.usage))
        return frame(_encode(data), event.event)

    def _error_frame(self, error: UpstreamError) -> bytes:
        return error_event(error_type(error), error.message)

    def _final_frames(self) -> bytes:
        if self.native:
            return MESSAGE_STOP
        usage = self.usage or self.record.estimated_usage(self.output_parts)
        return self._events_writer().finish(usage, self._cost(usage))


async def open_messages_stream(gw: CallServices, principal: Principal, call: MessagesCall, *, started: float,
                               client_request_id: str | None = None) -> MessagesStream:
    """Start a streaming Messages call; raises before any byte is sent if no deployment answers."""
    record, reservation, order = await begin_call(gw, principal, call.request, started, client_request_id)
    stream = MessagesStream(gw, record, reservation, order, call)
    await stream.open()
    return stream


async def count_message_tokens(gw: CallServices, body: bytes, headers: Mapping[str, str], *, beta: bool = False) -> int:
    """`/v1/messages/count_tokens`: the upstream's count from a native deployment, else the gateway's
    estimate (prompt bytes / 3, as for holds). Free, and no generation is recorded."""
    request, raw = decode_messages_request(body, CountTokensRequest)
    entry = known_model(gw, request.model, "text")
    call = MessagesCall({**raw, "max_tokens": 1}, headers, beta=beta)
    for deployment in attempt_order(gw.deployments[entry.id], gw.rng):
        native = native_provider(gw.provider_for(deployment))
        if native is not None:
            try:
                return await native.count_tokens(raw, deployment, call.headers, beta=beta)
            except UpstreamRejected:
                raise
            except UpstreamError:
                continue
    return estimate_tokens(prompt_bytes(call.request))
