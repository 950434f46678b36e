"""`POST /v1/chat/completions`: authorise → resolve → hold → route and call → relay → settle.

Every step that ran gets its "after": the hold taken before the call is always closed,
by a charge for a generation that succeeded (or was cut short by the client) or by a
release for one that failed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from typing import Any

import msgspec

from runapi.catalog import ModelEntry
from runapi.errors import UpstreamError, UpstreamUnavailable
from runapi.limits import UNSET_MAX_TOKENS_ESTIMATE, RateLimitStatus
from runapi.money import Usage, cost_nanos, estimate_tokens, nanos_to_usd
from runapi.pipeline.auth import Principal
from runapi.pipeline.call_services import CallServices, known_model
from runapi.pipeline.failover import first_answer
from runapi.pipeline.hold_bound import PromptShape, hold_usage, prompt_shape
from runapi.pipeline.metering import CallRecord
from runapi.pipeline.reservation import Reservation
from runapi.pipeline.routing import attempt_plan, deployment_key
from runapi.protocols.openai import ChatRequest, UpstreamChunk
from runapi.providers import Deployment
from runapi.transport import DONE, frame

_encode = msgspec.json.Encoder(decimal_format="number").encode
_decode = msgspec.json.Decoder().decode


def usage_json(usage: Usage, cost: Decimal) -> dict[str, Any]:
    """OpenAI's usage object, plus `cost` in USD."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.prompt_tokens + usage.output_tokens,
        "prompt_tokens_details": _prompt_details(usage),
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "cost": cost,
    }


def _prompt_details(usage: Usage) -> dict[str, int]:
    details = {"cached_tokens": usage.cache_read_tokens}
    if usage.cache_write_tokens:  # Anthropic-protocol models write caches, billed at the cache-write price
        details["cache_write_tokens"] = usage.cache_write_tokens
    return details


def _ceiling_cost(request: ChatRequest, shape: PromptShape, models: Iterable[ModelEntry]) -> int:
    """The most the call may cost on whichever of `models` (the model and its fallbacks) answers
    (a true upper bound: `hold_bound.py`)."""
    return max(cost_nanos(hold_usage(request, shape, model), model.pricing) for model in models)


async def begin_call(gw: CallServices, principal: Principal, request: ChatRequest, started: float,
                 client_request_id: str | None, generation_id: str | None = None,
                 ) -> tuple[CallRecord, Reservation, list[Deployment]]:
    """Resolve the model, admit the call and reserve the most it can cost (the caller settles or
    releases the reservation)."""
    entry = known_model(gw, request.model, "text")  # before any hold: a media model has no token price
    shape = prompt_shape(request)
    record = CallRecord(account_id=principal.account_id, key_id=principal.key_id, entry=entry,
                        stream=bool(request.stream), started=started, client_request_id=client_request_id,
                        prompt_bytes=shape.estimate_bytes)
    if generation_id:  # fixed by the caller (a task): a re-run's settlement is skipped, never charged twice
        record.generation_id = generation_id
    ceiling = Usage(input_tokens=estimate_tokens(record.prompt_bytes), output_tokens=request.output_limit(entry.max_output))
    order = attempt_plan(entry, gw.fallbacks, gw.deployments, gw.rng)  # the model's deployments, then fallbacks'
    max_cost = _ceiling_cost(request, shape, [entry, *(gw.catalog.models[d.model_id] for d in order)])
    explicit_max = request.max_completion_tokens or request.max_tokens
    reservation = await Reservation.open(
        gw.credit, gw.limits, principal, entry.id, prompt_tokens=ceiling.input_tokens,
        output_tokens=ceiling.output_tokens if explicit_max else
        request.output_limit(min(entry.max_output, UNSET_MAX_TOKENS_ESTIMATE)), max_cost_nanos=max_cost)
    record.rate_limit = reservation.status
    if not order:
        reservation.release()
        raise UpstreamUnavailable(f"The model `{entry.id}` has no deployment configured.")
    return record, reservation, order


async def fail_call(gw: CallServices, record: CallRecord, reservation: Reservation, error: BaseException) -> None:
    await gw.settlements.submit(record.settlement("failed", Usage(), error=str(error)), reservation)


class Completed(msgspec.Struct):
    body: bytes
    generation_id: str
    overhead_ms: float
    rate_limit: RateLimitStatus | None = None


async def complete_chat(gw: CallServices, principal: Principal, request: ChatRequest, raw: dict[str, Any], *,
                        started: float, client_request_id: str | None = None,
                        generation_id: str | None = None) -> Completed:
    """One non-streaming completion, settled (durably) before it is returned."""
    record, reservation, order = await begin_call(gw, principal, request, started, client_request_id, generation_id)
    try:
        reply = await first_answer(gw, record, order, lambda d: gw.provider_for(d).complete(raw, d))
    except BaseException as exc:  # every deployment failed, or cancelled: nothing answered, nothing charged
        await fail_call(gw, record, reservation, exc)
        raise

    estimated = reply.usage is None
    usage = reply.usage or record.estimated_usage(_reply_parts(reply.body))
    cost = nanos_to_usd(cost_nanos(usage, record.entry.pricing))
    body = reply.body
    body["id"] = record.generation_id
    body["model"] = record.entry.id
    body["usage"] = usage_json(usage, cost)
    settlement = record.settlement("succeeded", usage, estimated=estimated, cap=reservation.cap_charge)
    await gw.settlements.submit(settlement, reservation)
    return Completed(_encode(body), record.generation_id, record.overhead_ms(), record.rate_limit)


def _reply_parts(body: dict[str, Any]) -> int:
    """Estimated output tokens of a reply without usage: its text bytes / 3."""
    size = 0
    for choice in body.get("choices") or ():
        message = choice.get("message") or {}
        for field in ("content", "reasoning_content"):
            if isinstance(message.get(field), str):
                size += len(message[field].encode())
    return estimate_tokens(size)


class ChatStream:
    """A streaming completion: `open()` reaches an upstream, iterate for SSE bytes, then `close()`.

    `close()` must be called in every case; it settles the call:
    - the upstream finished: charged exactly from its usage (or the estimate, marked, if it sent none);
    - the client went away: the upstream call is cancelled and the account is charged for the
      input and the output generated so far (usage if the upstream reported it, else the estimate);
    - the upstream failed: nothing is charged, the reservation is released.
    """

    def __init__(self, gw: CallServices, record: CallRecord, reservation: Reservation, order: list[Deployment],
                 request: ChatRequest, raw: dict[str, Any]) -> None:
        self.gw = gw
        self.record = record
        self.reservation = reservation
        self.order = order
        self.raw = raw
        self.wants_usage = request.wants_usage
        self.usage: Usage | None = None
        self.output_parts = 0
        self.finished = False
        self.error: Exception | None = None
        self._settled = False
        self._upstream: AsyncIterator[list[UpstreamChunk]] | None = None
        self._held: list[UpstreamChunk] = []
        self._renames: list[tuple[bytes, bytes]] = []  # (upstream bytes, ours) replaced in every event

    @property
    def generation_id(self) -> str:
        return self.record.generation_id

    async def open(self) -> None:
        """Reach a deployment that starts answering; fail over to others before any byte is sent."""
        try:
            self._upstream, self._held = await first_answer(self.gw, self.record, self.order, self._open_upstream)
        except BaseException as exc:
            await self._settle_failed(exc)
            raise
        upstream_id = self._held[0].upstream_id
        if upstream_id:
            self._renames.append((b'"' + upstream_id.encode() + b'"', b'"' + self.generation_id.encode() + b'"'))
        model = _decode(self._held[0].payload).get("model") if self._held[0].payload.startswith(b"{") else None
        if isinstance(model, str) and model and model != self.record.entry.id:
            # show the public ID of the model that answers, as in JSON answers
            public = self.record.entry.id.encode()
            self._renames.append((b'"model":"' + model.encode() + b'"', b'"model":"' + public + b'"'))

    def _upstream_stream(self, deployment: Deployment) -> AsyncIterator[list[UpstreamChunk]]:
        return self.gw.provider_for(deployment).stream(self.raw, deployment)

    async def _open_upstream(self, deployment: Deployment
                             ) -> tuple[AsyncIterator[list[UpstreamChunk]], list[UpstreamChunk]]:
        """Start the upstream stream and hold its chunks back until a read brings one with generated
        content (or usage): an upstream that stalls or fails before that can still be failed over."""
        upstream = aiter(self._upstream_stream(deployment))
        held: list[UpstreamChunk] = []
        try:
            async for chunks in upstream:
                held += chunks
                if any(chunk.content_parts or chunk.usage is not None for chunk in chunks):
                    return upstream, held
        except BaseException:
            await upstream.aclose()  # type: ignore[attr-defined]
            raise
        if not held:
            raise UpstreamUnavailable("the upstream closed the stream without any event")
        return upstream, held

    def _track(self, chunk: UpstreamChunk) -> None:
        """Count output and note the first token and the usage, whatever is sent to the client."""
        if chunk.content_parts:
            self.output_parts += chunk.content_parts
            if self.record.first_token_at is None:
                self.record.first_token_at = time.perf_counter()
        if chunk.usage is not None:
            self.usage = chunk.usage

    def _relay(self, chunks: list[UpstreamChunk]) -> bytes:
        """The bytes to send for the chunks of one read (b"" for none): the upstream's events as they
        are, with our generation id and public model name, and our usage (with cost) if asked for."""
        payloads: list[bytes] = []
        for chunk in chunks:
            self._track(chunk)
            payload = chunk.payload
            if chunk.usage is not None:
                if not self.wants_usage:
                    if chunk.usage_only:
                        continue
                    data = _decode(payload)
                    data.pop("usage", None)
                else:
                    data = _decode(payload)
                    data["usage"] = usage_json(chunk.usage, nanos_to_usd(cost_nanos(chunk.usage, self.record.entry.pricing)))
                payload = _encode(data)
            payloads.append(payload)
        if not payloads:
            return b""
        out = b"data: " + b"\n\ndata: ".join(payloads) + b"\n\n"  # the needles below never span two events
        if not self.wants_usage and b'"usage":null' in out:
            out = out.replace(b',"usage":null', b"").replace(b'"usage":null,', b"")
        for upstream, ours in self._renames:
            out = out.replace(upstream, ours)
        return out

    def _error_frame(self, error: UpstreamError) -> bytes:
        return frame(_encode(error.to_dict()))

    def _final_frames(self) -> bytes:
        """The bytes after the last upstream chunk, sent once the call is settled."""
        return DONE

    async def events(self) -> AsyncIterator[bytes]:
        """SSE bytes for the client, one piece per upstream read. Upstream failures end the stream with an
        error event (not retried: the client already has bytes)."""
        assert self._upstream is not None
        try:
            data = self._relay(self._held)
            self._held = []
            if data:
                yield data
            async for chunks in self._upstream:
                data = self._relay(chunks)
                if data:
                    yield data
        except UpstreamError as exc:
            self.error = exc
            if self.record.deployment is not None:
                self.gw.circuits.failed(deployment_key(self.record.deployment), self.record.account_id)
            yield self._error_frame(exc)
            return
        self.finished = True
        await self.close(disconnected=False)  # durable before the client sees the end
        yield self._final_frames()

    async def close(self, *, disconnected: bool) -> None:
        """Settle exactly once (see the class docstring). Cancels the upstream call if still open."""
        if self._settled:
            return
        self._settled = True
        if self._upstream is not None:
            await self._upstream.aclose()  # type: ignore[attr-defined]
        record = self.record
        cap = self.reservation.cap_charge
        if self.finished:
            usage = self.usage or record.estimated_usage(self.output_parts)
            settlement = record.settlement("succeeded", usage, estimated=self.usage is None, cap=cap)
        elif disconnected and self.error is None:
            usage = self.usage or record.estimated_usage(self.output_parts)
            settlement = record.settlement("cancelled", usage, estimated=self.usage is None, cap=cap,
                                           error="client disconnected")
        else:
            error = self.error or UpstreamError("the stream ended early")
            settlement = record.settlement("failed", self.usage or Usage(), error=str(error))
        await self.gw.settlements.submit(settlement, self.reservation)

    async def _settle_failed(self, error: BaseException) -> None:
        self._settled = True
        await fail_call(self.gw, self.record, self.reservation, error)


async def open_chat_stream(gw: CallServices, principal: Principal, request: ChatRequest, raw: dict[str, Any], *,
                           started: float, client_request_id: str | None = None) -> ChatStream:
    """Start a streaming completion; raises before any byte is sent if no deployment answers."""
    record, reservation, order = await begin_call(gw, principal, request, started, client_request_id)
    stream = ChatStream(gw, record, reservation, order, request, raw)
    await stream.open()
    return stream
