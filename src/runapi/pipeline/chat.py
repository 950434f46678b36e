"""`POST /v1/chat/completions`: authorise → resolve → hold → route and call → relay → settle.

Every step that ran gets its "after": the hold taken before the call is always closed,
by a charge for a generation that succeeded (or was cut short by the client) or by a
release for one that failed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import msgspec

from runapi.accounting.credit import Hold
from runapi.accounting.money import Usage, cost_nanos, estimate_tokens, nanos_to_usd
from runapi.errors import NotFound, UpstreamError, UpstreamRejected, UpstreamUnavailable
from runapi.pipeline.auth import Principal
from runapi.pipeline.chat_request import ChatRequest, prompt_bytes
from runapi.pipeline.gateway import Gateway
from runapi.pipeline.metering import CallRecord
from runapi.pipeline.routing import attempt_order
from runapi.providers import Deployment, UpstreamChunk
from runapi.providers.sse import DONE, frame

_encode = msgspec.json.Encoder(decimal_format="number").encode
_decode = msgspec.json.Decoder().decode


def usage_json(usage: Usage, cost: Decimal) -> dict[str, Any]:
    """OpenAI's usage object, plus `cost` in USD."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.prompt_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "cost": cost,
    }


async def _begin(gw: Gateway, principal: Principal, request: ChatRequest, started: float,
                 client_request_id: str | None) -> tuple[CallRecord, Hold, list[Deployment]]:
    """Resolve the model and reserve the most this call can cost."""
    entry = gw.model(request.model)
    if entry is None:
        raise NotFound(f"The model `{request.model}` does not exist. GET /v1/models lists the models.",
                       param="model", code="model_not_found")
    record = CallRecord(account_id=principal.account_id, key_id=principal.key_id, entry=entry,
                        stream=bool(request.stream), started=started, client_request_id=client_request_id,
                        prompt_bytes=prompt_bytes(request))
    ceiling = Usage(input_tokens=estimate_tokens(record.prompt_bytes), output_tokens=request.output_limit(entry.max_output))
    hold = await gw.credit.reserve(principal.account_id, cost_nanos(ceiling, entry.pricing))
    order = attempt_order(gw.deployments[entry.id], gw.rng)[: gw.settings.server.max_attempts]
    if not order:
        gw.credit.release(hold)
        raise UpstreamUnavailable(f"The model `{entry.id}` has no deployment configured.")
    return record, hold, order


async def _fail(gw: Gateway, record: CallRecord, hold: Hold, error: Exception) -> None:
    await gw.settlements.submit(record.settlement("failed", Usage(), error=str(error)), hold)


class Completed(msgspec.Struct):
    body: bytes
    generation_id: str
    overhead_ms: float


async def complete_chat(gw: Gateway, principal: Principal, request: ChatRequest, raw: dict[str, Any], *,
                        started: float, client_request_id: str | None = None) -> Completed:
    """One non-streaming completion, settled (durably) before it is returned."""
    record, hold, order = await _begin(gw, principal, request, started, client_request_id)
    last_error: UpstreamError | None = None
    for deployment in order:
        record.deployment = deployment
        t0 = time.perf_counter()
        try:
            reply = await gw.provider_for(deployment).complete(raw, deployment)
        except UpstreamRejected as exc:
            record.upstream_s += time.perf_counter() - t0
            await _fail(gw, record, hold, exc)
            raise
        except UpstreamError as exc:
            record.upstream_s += time.perf_counter() - t0
            last_error = exc
            continue
        except BaseException as exc:  # cancelled: nothing was answered, nothing is charged
            await _fail(gw, record, hold, exc)
            raise
        record.upstream_s += time.perf_counter() - t0
        break
    else:
        assert last_error is not None
        await _fail(gw, record, hold, last_error)
        raise last_error

    estimated = reply.usage is None
    usage = reply.usage or record.estimated_usage(_reply_parts(reply.body))
    cost = nanos_to_usd(cost_nanos(usage, record.entry.pricing))
    body = reply.body
    body["id"] = record.generation_id
    body["model"] = record.entry.id
    body["usage"] = usage_json(usage, cost)
    settlement = record.settlement("succeeded", usage, estimated=estimated,
                                   cap=lambda c: gw.credit.cap_charge(hold, c))
    await gw.settlements.submit(settlement, hold)
    return Completed(_encode(body), record.generation_id, record.overhead_ms())


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
    - the upstream failed: nothing is charged, the hold is released.
    """

    def __init__(self, gw: Gateway, record: CallRecord, hold: Hold, order: list[Deployment],
                 request: ChatRequest, raw: dict[str, Any]) -> None:
        self.gw = gw
        self.record = record
        self.hold = hold
        self.order = order
        self.raw = raw
        self.wants_usage = request.wants_usage
        self.usage: Usage | None = None
        self.output_parts = 0
        self.finished = False
        self.error: Exception | None = None
        self._settled = False
        self._upstream: AsyncIterator[UpstreamChunk] | None = None
        self._first: UpstreamChunk | None = None
        self._upstream_id = b""

    @property
    def generation_id(self) -> str:
        return self.record.generation_id

    async def open(self) -> None:
        """Reach a deployment that answers with a first chunk; retry others before any byte is sent."""
        last_error: UpstreamError | None = None
        for deployment in self.order:
            self.record.deployment = deployment
            upstream = aiter(self.gw.provider_for(deployment).stream(self.raw, deployment))
            t0 = time.perf_counter()
            try:
                first = await anext(upstream)
            except StopAsyncIteration:
                last_error = UpstreamUnavailable("the upstream closed the stream without any event")
            except UpstreamRejected as exc:
                self.record.upstream_s += time.perf_counter() - t0
                await self._settle_failed(exc)
                raise
            except UpstreamError as exc:
                last_error = exc
            except BaseException as exc:
                await upstream.aclose()  # type: ignore[attr-defined]
                await self._settle_failed(exc)
                raise
            else:
                self.record.upstream_s += time.perf_counter() - t0
                self._upstream, self._first = upstream, first
                self._upstream_id = first.upstream_id.encode()
                return
            self.record.upstream_s += time.perf_counter() - t0
            await upstream.aclose()  # type: ignore[attr-defined]
        assert last_error is not None
        await self._settle_failed(last_error)
        raise last_error

    def _relay(self, chunk: UpstreamChunk) -> bytes | None:
        """The bytes to send for one upstream chunk, or None to send nothing."""
        if chunk.content_parts:
            self.output_parts += chunk.content_parts
            if self.record.first_token_at is None:
                self.record.first_token_at = time.perf_counter()
        payload = chunk.payload
        if chunk.usage is not None:
            self.usage = chunk.usage
            if not self.wants_usage:
                if chunk.usage_only:
                    return None
                data = _decode(payload)
                data.pop("usage", None)
                payload = _encode(data)
            else:
                data = _decode(payload)
                data["usage"] = usage_json(chunk.usage, nanos_to_usd(cost_nanos(chunk.usage, self.record.entry.pricing)))
                payload = _encode(data)
        elif not self.wants_usage and b'"usage":null' in payload:
            payload = payload.replace(b',"usage":null', b"").replace(b'"usage":null,', b"")
        if self._upstream_id:
            payload = payload.replace(b'"' + self._upstream_id + b'"', b'"' + self.generation_id.encode() + b'"')
        return frame(payload)

    async def events(self) -> AsyncIterator[bytes]:
        """SSE bytes for the client. Upstream failures end the stream with an error event."""
        assert self._upstream is not None and self._first is not None
        out = self._relay(self._first)
        if out is not None:
            yield out
        try:
            async for chunk in self._upstream:
                out = self._relay(chunk)
                if out is not None:
                    yield out
        except UpstreamError as exc:
            self.error = exc
            yield frame(_encode(exc.to_dict()))
            return
        self.finished = True
        await self.close(disconnected=False)  # durable before the client sees [DONE]
        yield DONE

    async def close(self, *, disconnected: bool) -> None:
        """Settle exactly once (see the class docstring). Cancels the upstream call if still open."""
        if self._settled:
            return
        self._settled = True
        if self._upstream is not None:
            await self._upstream.aclose()  # type: ignore[attr-defined]
        record = self.record
        cap = lambda cost: self.gw.credit.cap_charge(self.hold, cost)  # noqa: E731
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
        await self.gw.settlements.submit(settlement, self.hold)

    async def _settle_failed(self, error: BaseException) -> None:
        self._settled = True
        await self.gw.settlements.submit(self.record.settlement("failed", Usage(), error=str(error)), self.hold)


async def open_chat_stream(gw: Gateway, principal: Principal, request: ChatRequest, raw: dict[str, Any], *,
                           started: float, client_request_id: str | None = None) -> ChatStream:
    """Start a streaming completion; raises before any byte is sent if no deployment answers."""
    record, hold, order = await _begin(gw, principal, request, started, client_request_id)
    stream = ChatStream(gw, record, hold, order, request, raw)
    await stream.open()
    return stream
