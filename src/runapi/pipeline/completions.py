"""`POST /v1/completions` (OpenAI's legacy text completions), on the chat pipeline.

The same steps as chat completions (resolve, admit, hold, fail over, settle) from `pipeline.chat`;
the client's body passes through to upstreams with the `TextCompletions` ability, for models the
catalog marks `text_completions`. Any other model is refused before anything is held, with a 404
naming the endpoints every model serves.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Hashable
from typing import Any, cast

import msgspec

from runapi.catalog import ModelEntry
from runapi.errors import NotFound, UpstreamUnavailable
from runapi.money import cost_nanos, estimate_tokens, nanos_to_usd
from runapi.pipeline.auth import Principal
from runapi.pipeline.call_services import CallServices, known_model
from runapi.pipeline.chat import (
    ChatStream,
    Completed,
    begin_call,
    fail_call,
    usage_json,
)
from runapi.pipeline.failover import first_answer
from runapi.pipeline.metering import CallRecord
from runapi.pipeline.reservation import Reservation
from runapi.protocols.openai import CompletionRequest, UpstreamChunk, UpstreamReply
from runapi.providers import Deployment, TextCompletions

_encode = msgspec.json.Encoder(decimal_format="number").encode

@functools.cache
def _serves_text(kind: Hashable) -> bool:
    """Whether a provider class has the `TextCompletions` ability (asked once per class: a runtime
    protocol check walks every member)."""
    return isinstance(kind, type) and issubclass(kind, TextCompletions)


def text_provider(gw: CallServices, deployment: Deployment) -> TextCompletions | None:
    """The deployment's provider as a `TextCompletions`, or None when its model or protocol has none."""
    if not gw.catalog.models[deployment.model_id].text_completions:
        return None
    provider = gw.provider_for(deployment)
    return cast(TextCompletions, provider) if _serves_text(cast(Hashable, type(provider))) else None


ALTERNATIVES = "`POST /v1/chat/completions` or `POST /v1/responses`"


def _check_model(gw: CallServices, request: CompletionRequest) -> ModelEntry:
    entry = known_model(gw, request.model)
    if not any(text_provider(gw, d) is not None for d in gw.deployments[entry.id]):
        raise NotFound(f"The model `{entry.id}` does not serve legacy text completions (`/v1/completions`); "
                       f"use {ALTERNATIVES}, which every model serves.", param="model",
                       code="unsupported_endpoint")
    return entry


async def _begin(gw: CallServices, principal: Principal, request: CompletionRequest, started: float,
                 client_request_id: str | None, generation_id: str | None = None,
                 ) -> tuple[CallRecord, Reservation, list[Deployment]]:
    """`begin_call` for a model that serves text completions, with a plan of the deployments that do."""
    _check_model(gw, request)
    record, reservation, order = await begin_call(gw, principal, request.chat_view(), started, client_request_id,
                                                  generation_id)
    serving = [d for d in order if text_provider(gw, d) is not None]  # fallbacks without the ability drop out
    if not serving:  # not reached: the model itself serves text completions (checked above)
        error = UpstreamUnavailable(f"No deployment of `{record.entry.id}` serves text completions.")
        await fail_call(gw, record, reservation, error)
        raise error
    return record, reservation, serving


def _text_parts(body: dict[str, Any]) -> int:
    """Estimated output tokens of an answer without usage: its text bytes / 3."""
    return estimate_tokens(sum(len(str(choice.get("text") or "").encode())
                               for choice in body.get("choices") or () if isinstance(choice, dict)))


async def complete_text(gw: CallServices, principal: Principal, request: CompletionRequest, raw: dict[str, Any], *,
                        started: float, client_request_id: str | None = None,
                        generation_id: str | None = None) -> Completed:
    """One non-streaming text completion, settled (durably) before it is returned."""
    record, reservation, order = await _begin(gw, principal, request, started, client_request_id, generation_id)

    async def attempt(deployment: Deployment) -> UpstreamReply:
        provider = text_provider(gw, deployment)
        assert provider is not None  # the plan holds only deployments that serve them (`_begin`)
        return await provider.complete_text(raw, deployment)

    try:
        reply = await first_answer(gw, record, order, attempt)
    except BaseException as exc:  # nothing answered, nothing charged
        await fail_call(gw, record, reservation, exc)
        raise
    usage = reply.usage or record.estimated_usage(_text_parts(reply.body))
    body = reply.body
    body.update(id=record.generation_id, model=record.entry.id,
                usage=usage_json(usage, nanos_to_usd(cost_nanos(usage, record.entry.pricing))))
    settlement = record.settlement("succeeded", usage, estimated=reply.usage is None, cap=reservation.cap_charge)
    await gw.settlements.submit(settlement, reservation)
    return Completed(_encode(body), record.generation_id, record.overhead_ms(), record.rate_limit)


class TextStream(ChatStream):
    """A streaming text completion: `ChatStream`'s failover, relay and settlement, on `/completions`."""

    def __init__(self, gw: CallServices, record: CallRecord, reservation: Reservation, order: list[Deployment],
                 request: CompletionRequest, raw: dict[str, Any]) -> None:
        super().__init__(gw, record, reservation, order, request.chat_view(), raw)

    def _upstream_stream(self, deployment: Deployment) -> AsyncIterator[list[UpstreamChunk]]:
        provider = text_provider(self.gw, deployment)
        assert provider is not None  # the plan holds only deployments that serve them (`_begin`)
        return provider.stream_text(self.raw, deployment)


async def open_text_stream(gw: CallServices, principal: Principal, request: CompletionRequest, raw: dict[str, Any], *,
                           started: float, client_request_id: str | None = None) -> TextStream:
    """Start a streaming text completion; raises before any byte is sent if no deployment answers."""
    record, reservation, order = await _begin(gw, principal, request, started, client_request_id)
    stream = TextStream(gw, record, reservation, order, request, raw)
    await stream.open()
    return stream
