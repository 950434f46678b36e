"""`POST /v1/responses` (the OpenAI Responses API) for every catalog model, on the chat pipeline.

The request is translated once into a chat-completions body (`protocols.responses.to_chat`), with the
stored context a `previous_response_id` replays and the stored items `item_reference`s name; the
call then takes chat's steps — resolve, admit, hold, fail over, settle — and its answer (a reply or
the stream's chunks, from any upstream: Anthropic-protocol adapters answer in chat's shape too) is
translated back. The response ID is the generation's (`resp_<hex>` for `gen-<hex>`). A stored
response is queued for writing once answered (`storage.responses`), never delaying the answer.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from runapi.errors import InvalidRequest, NotFound, UpstreamError
from runapi.money import Usage, cost_nanos, estimate_tokens, nanos_to_usd
from runapi.pipeline.auth import Principal
from runapi.pipeline.call_services import CallServices, known_model
from runapi.pipeline.chat import ChatStream, Completed, begin_call, fail_call
from runapi.pipeline.failover import first_answer
from runapi.pipeline.metering import CallRecord
from runapi.pipeline.reservation import Reservation
from runapi.protocols.openai import ChatRequest, UpstreamChunk
from runapi.protocols.responses import (
    ChatToResponseEvents,
    ChatTranslation,
    ResponseContext,
    ResponsesRequest,
    decode_responses_request,
    echo_params,
    input_items,
    item_response,
    number_input_items,
    output_items,
    references,
    response_id,
    response_object,
    to_chat,
    usage_json,
)
from runapi.providers import Deployment
from runapi.storage import ResponseStore, StoredResponse, timestamp

_encode = msgspec.json.Encoder(decimal_format="number").encode


class ResponsesServices(CallServices, Protocol):
    """What a Responses call needs: one call's services, and the store of responses."""

    @property
    def response_store(self) -> ResponseStore: ...


class ResponsesCall:
    """One `/v1/responses` request: the typed request, its chat translation and its input items as stored."""

    __slots__ = ("chat", "chat_request", "inputs", "request", "translation")

    def __init__(self, request: ResponsesRequest, translation: ChatTranslation, inputs: list[dict[str, Any]]) -> None:
        self.request = request
        self.translation = translation
        self.chat = chat = translation.body
        self.inputs = inputs  # this turn's input items, references resolved
        try:
            self.chat_request = msgspec.convert(chat, ChatRequest)
        except msgspec.ValidationError as exc:
            raise InvalidRequest(f"Invalid request body: {exc}", param="input") from exc

    def context(self, record: CallRecord, created_at: int) -> ResponseContext:
        return ResponseContext(response_id(record.generation_id), created_at, record.entry.id,
                               echo_params(self.request), self.translation.custom_tools, self.translation.namespaces)

    def stored(self, ctx: ResponseContext, record: CallRecord, response: dict[str, Any]) -> StoredResponse:
        params = {**ctx.params, "incomplete_details": response["incomplete_details"],
                  "completed_at": response["completed_at"]}
        return StoredResponse(
            id=ctx.id, account_id=record.account_id, generation_id=record.generation_id, model=ctx.model,
            status=response["status"], previous_response_id=self.request.previous_response_id,
            instructions=self.request.instructions, input_items=number_input_items(self.inputs, ctx.id),
            output_items=response["output"], usage=response["usage"], params=params,
            created_at=timestamp(ctx.created_at))


async def _referenced(gw: ResponsesServices, account_id: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored items that `item_reference`s name (those not found are left out)."""
    found: dict[str, dict[str, Any]] = {}
    for wanted in ids:
        owner = item_response(wanted)
        stored = await gw.response_store.get(account_id, owner) if owner else None
        for item in (stored.input_items + stored.output_items) if stored else ():
            if item.get("id") == wanted:
                found[wanted] = item
    return found


async def prepare_responses_call(gw: ResponsesServices, principal: Principal, body: bytes) -> ResponsesCall:
    """Validate a Responses body and translate it, with its stored context; raises `InvalidRequest` naming
    the bad field, `NotFound` for a `previous_response_id` that is not the account's."""
    request, raw = decode_responses_request(body)
    entry = known_model(gw, request.model)  # before the translation's checks, as chat answers an unknown model first
    if request.background:
        raise InvalidRequest("Background responses are not supported by this gateway.", param="background")
    if raw.get("conversation") is not None:
        raise InvalidRequest("Conversations are not supported by this gateway: use `previous_response_id`.",
                             param="conversation")
    history: list[dict[str, Any]] = []
    items = input_items(request)
    wanted = references(items)
    if request.previous_response_id or wanted:
        await gw.response_store.flush()  # a response answered a moment ago by this process may not be written yet
    if request.previous_response_id:
        chain = await gw.response_store.chain(principal.account_id, request.previous_response_id)
        if chain is None:
            raise NotFound(f"Previous response with id '{request.previous_response_id}' not found.",
                           param="previous_response_id", code="previous_response_not_found")
        for stored in chain:  # instructions do not carry over (as at OpenAI): only items are replayed
            history += stored.input_items + stored.output_items
    referenced = await _referenced(gw, principal.account_id, wanted) if wanted else {}
    translation = to_chat(request, raw, history=history, referenced=referenced,
                          glm_thinking=entry.family.lower().startswith("glm"))
    inputs = [referenced.get(str(item.get("id")), item) if item.get("type") == "item_reference" else item
              for item in items]
    return ResponsesCall(request, translation, inputs)


def _reply_parts(reply: dict[str, Any]) -> int:
    """Estimated output tokens of a reply without usage: its text bytes / 3."""
    message = ((reply.get("choices") or [{}])[0]).get("message") or {}
    size = sum(len(str(message.get(field) or "").encode()) for field in ("content", "reasoning_content"))
    return estimate_tokens(size)


async def complete_responses(gw: ResponsesServices, principal: Principal, call: ResponsesCall, *, started: float,
                             client_request_id: str | None = None, generation_id: str | None = None) -> Completed:
    """One non-streaming response, settled (durably) before it is returned, and queued for the store."""
    record, reservation, order = await begin_call(gw, principal, call.chat_request, started, client_request_id,
                                                  generation_id)
    ctx = call.context(record, int(time.time()))
    try:
        reply = await first_answer(gw, record, order, lambda d: gw.provider_for(d).complete(call.chat, d))
    except BaseException as exc:  # nothing answered, nothing charged
        await fail_call(gw, record, reservation, exc)
        raise
    usage = reply.usage or record.estimated_usage(_reply_parts(reply.body))
    cost = nanos_to_usd(cost_nanos(usage, record.entry.pricing))
    items, reason = output_items(reply.body, ctx)
    status = "incomplete" if reason else "completed"
    response = response_object(ctx, status, items, usage_json(usage, cost), incomplete_reason=reason,
                               completed_at=int(time.time()) if status == "completed" else None)
    settlement = record.settlement("succeeded", usage, estimated=reply.usage is None, cap=reservation.cap_charge)
    await gw.settlements.submit(settlement, reservation)
    if call.request.stored:
        gw.response_store.submit(call.stored(ctx, record, response))
    return Completed(_encode(response), record.generation_id, record.overhead_ms(), record.rate_limit)


class ResponsesStream(ChatStream):
    """A streaming response: `ChatStream`'s failover, relay, disconnect rule and settlement, with the chat
    chunks turned into Responses events. `response.completed` is sent once the call is settled."""

    def __init__(self, gw: ResponsesServices, record: CallRecord, reservation: Reservation, order: list[Deployment],
                 call: ResponsesCall) -> None:
        super().__init__(gw, record, reservation, order, call.chat_request, call.chat)
        self.store = gw.response_store
        self.call = call
        self.ctx = call.context(record, int(time.time()))
        self.writer = ChatToResponseEvents(self.ctx)

    def _relay(self, chunks: list[UpstreamChunk]) -> bytes:
        feed, track = self.writer.feed_payload, self._track
        out = []
        for chunk in chunks:
            track(chunk)
            out.append(feed(chunk.payload))
        return b"".join(out)

    def _error_frame(self, error: UpstreamError) -> bytes:
        return self.writer.fail(error.code, error.message)

    def _final_frames(self) -> bytes:
        usage = self.usage or self.record.estimated_usage(self.output_parts)
        out = self.writer.finish(usage, self._cost(usage), int(time.time()))
        if self.call.request.stored and self.writer.response is not None:
            self.store.submit(self.call.stored(self.ctx, self.record, self.writer.response))
        return out

    def _cost(self, usage: Usage) -> Decimal:
        return nanos_to_usd(cost_nanos(usage, self.record.entry.pricing))


async def open_responses_stream(gw: ResponsesServices, principal: Principal, call: ResponsesCall, *, started: float,
                                client_request_id: str | None = None) -> ResponsesStream:
    """Start a streaming response; raises before any byte is sent if no deployment answers."""
    record, reservation, order = await begin_call(gw, principal, call.chat_request, started, client_request_id)
    stream = ResponsesStream(gw, record, reservation, order, call)
    await stream.open()
    return stream
