"""`POST /v1/completions` (OpenAI's legacy text completions), on the chat pipeline.

The same steps as chat completions (resolve, admit, hold, fail over, settle) from `pipeline.chat`;
the client's body passes through to upstreams with the `TextCompletions` ability, for models the
catalog marks `text_completions`. Any other model is refused before anything is held, with a 404
naming the endpoints every model serves.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Hashable
from typing import Annotated, Any, cast

import msgspec
from msgspec import Meta

from runapi.accounting.credit import Hold
from runapi.accounting.money import cost_nanos, estimate_tokens, nanos_to_usd
from runapi.catalog import ModelEntry
from runapi.errors import NotFound, UpstreamUnavailable
from runapi.pipeline.auth import Principal
from runapi.pipeline.chat import ChatStream, Completed, begin_call, fail_call, usage_json
from runapi.pipeline.chat_request import ChatRequest, Message, PositiveInt, StreamOptions, decode_typed_body
from runapi.pipeline.failover import first_answer
from runapi.pipeline.gateway import Gateway
from runapi.pipeline.metering import CallRecord
from runapi.providers import Deployment, TextCompletions, UpstreamChunk, UpstreamReply

_encode = msgspec.json.Encoder(decimal_format="number").encode

# A string, strings, token ids, or lists of token ids (msgspec takes one list type per union).
Prompt = str | list[str | int | list[int]]


class CompletionRequest(msgspec.Struct):
    """The fields of a text-completions body the gateway reads; the rest passes through."""

    model: Annotated[str, Meta(min_length=1)]
    prompt: Prompt
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    best_of: Annotated[int, Meta(ge=1, le=128)] | None = None
    suffix: str | None = None

    def prompts(self) -> list[str]:
        """Each prompt as text; a token-id prompt as one byte per token (a token is at least a byte)."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if prompt and all(isinstance(item, int) for item in prompt):
            return ["x" * len(prompt)]
        return [item if isinstance(item, str) else "x" * (1 if isinstance(item, int) else len(item))
                for item in prompt] or [""]

    def chat_view(self) -> ChatRequest:
        """The request as the chat pipeline's hold and limits read it: one message per prompt (and the
        suffix), with as many choices as the upstream generates (`best_of` or `n`, per prompt)."""
        texts = self.prompts() + ([self.suffix] if self.suffix else [])
        per_prompt = max(self.n or 1, self.best_of or 1)
        return ChatRequest(model=self.model, messages=[Message(role="user", content=text) for text in texts],
                           stream=self.stream, stream_options=self.stream_options, max_tokens=self.max_tokens,
                           n=per_prompt * len(self.prompts()))


_WHOLE_NUMBER_FIELDS = ("max_tokens", "n", "best_of")


def decode_completion_request(body: bytes) -> tuple[CompletionRequest, dict[str, Any]]:
    """Validate a text-completions body. Raises `InvalidRequest` naming the bad field."""
    return decode_typed_body(body, CompletionRequest, whole_numbers=_WHOLE_NUMBER_FIELDS)


@functools.cache
def _serves_text(kind: Hashable) -> bool:
    """Whether a provider class has the `TextCompletions` ability (asked once per class: a runtime
    protocol check walks every member)."""
    return isinstance(kind, type) and issubclass(kind, TextCompletions)


def text_provider(gw: Gateway, deployment: Deployment) -> TextCompletions | None:
    """The deployment's provider as a `TextCompletions`, or None when its model or protocol has none."""
    if not gw.catalog.models[deployment.model_id].text_completions:
        return None
    provider = gw.provider_for(deployment)
    return cast(TextCompletions, provider) if _serves_text(cast(Hashable, type(provider))) else None


ALTERNATIVES = "`POST /v1/chat/completions` or `POST /v1/responses`"


def _check_model(gw: Gateway, request: CompletionRequest) -> ModelEntry:
    entry = gw.model(request.model)
    if entry is None:
        raise NotFound(f"The model `{request.model}` does not exist. GET /v1/models lists the models.",
                       param="model", code="model_not_found")
    if not any(text_provider(gw, d) is not None for d in gw.deployments[entry.id]):
        raise NotFound(f"The model `{entry.id}` does not serve legacy text completions (`/v1/completions`); "
                       f"use {ALTERNATIVES}, which every model serves.", param="model",
                       code="unsupported_endpoint")
    return entry


async def _begin(gw: Gateway, principal: Principal, request: CompletionRequest, started: float,
                 client_request_id: str | None, generation_id: str | None = None,
                 ) -> tuple[CallRecord, Hold, list[Deployment]]:
    """`begin_call` for a model that serves text completions, with a plan of the deployments that do."""
    _check_model(gw, request)
    record, hold, order = await begin_call(gw, principal, request.chat_view(), started, client_request_id,
                                           generation_id)
    serving = [d for d in order if text_provider(gw, d) is not None]  # fallbacks without the ability drop out
    if not serving:  # not reached: the model itself serves text completions (checked above)
        error = UpstreamUnavailable(f"No deployment of `{record.entry.id}` serves text completions.")
        await fail_call(gw, record, hold, error)
        raise error
    return record, hold, serving


def _text_parts(body: dict[str, Any]) -> int:
    """Estimated output tokens of an answer without usage: its text bytes / 3."""
    return estimate_tokens(sum(len(str(choice.get("text") or "").encode())
                               for choice in body.get("choices") or () if isinstance(choice, dict)))


async def complete_text(gw: Gateway, principal: Principal, request: CompletionRequest, raw: dict[str, Any], *,
                        started: float, client_request_id: str | None = None,
                        generation_id: str | None = None) -> Completed:
    """One non-streaming text completion, settled (durably) before it is returned."""
    record, hold, order = await _begin(gw, principal, request, started, client_request_id, generation_id)

    async def attempt(deployment: Deployment) -> UpstreamReply:
        provider = text_provider(gw, deployment)
        assert provider is not None  # the plan holds only deployments that serve them (`_begin`)
        return await provider.complete_text(raw, deployment)

    try:
        reply = await first_answer(gw, record, order, attempt)
    except BaseException as exc:  # nothing answered, nothing charged
        await fail_call(gw, record, hold, exc)
        raise
    usage = reply.usage or record.estimated_usage(_text_parts(reply.body))
    body = reply.body
    body.update(id=record.generation_id, model=record.entry.id,
                usage=usage_json(usage, nanos_to_usd(cost_nanos(usage, record.entry.pricing))))
    settlement = record.settlement("succeeded", usage, estimated=reply.usage is None,
                                   cap=lambda c: gw.credit.cap_charge(hold, c))
    await gw.settlements.submit(settlement, hold)
    return Completed(_encode(body), record.generation_id, record.overhead_ms(), record.rate_limit)


class TextStream(ChatStream):
    """A streaming text completion: `ChatStream`'s failover, relay and settlement, on `/completions`."""

    def __init__(self, gw: Gateway, record: CallRecord, hold: Hold, order: list[Deployment],
                 request: CompletionRequest, raw: dict[str, Any]) -> None:
        super().__init__(gw, record, hold, order, request.chat_view(), raw)

    def _upstream_stream(self, deployment: Deployment) -> AsyncIterator[list[UpstreamChunk]]:
        provider = text_provider(self.gw, deployment)
        assert provider is not None  # the plan holds only deployments that serve them (`_begin`)
        return provider.stream_text(self.raw, deployment)


async def open_text_stream(gw: Gateway, principal: Principal, request: CompletionRequest, raw: dict[str, Any], *,
                           started: float, client_request_id: str | None = None) -> TextStream:
    """Start a streaming text completion; raises before any byte is sent if no deployment answers."""
    record, hold, order = await _begin(gw, principal, request, started, client_request_id)
    stream = TextStream(gw, record, hold, order, request, raw)
    await stream.open()
    return stream
