"""Turning one call's outcome into a generation row and a charge (the pipeline's "after" step)."""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable
from decimal import Decimal

import msgspec

from runapi.catalog import ModelEntry
from runapi.clock import utcnow
from runapi.limits import RateLimitStatus
from runapi.money import Pricing, Usage, cost_nanos, estimate_tokens, usd_to_nanos
from runapi.pipeline.call_facts import note_settlement
from runapi.providers import Deployment
from runapi.storage import Generation, Settlement

NO_USAGE = Usage()


def new_generation_id() -> str:
    """"gen-", 12 hex digits of Unix milliseconds, 20 random hex digits: unique (80 random bits per
    millisecond) and in creation order, so the indexes on generation IDs (generations' primary key,
    the ledger's unique `generation_id`) grow at their right edge instead of dirtying a random page
    of each per insert (bench/RESULTS.md: the SQLite settlement thread's CPU per row)."""
    return f"gen-{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


class CallRecord:
    """What the pipeline learns about one call while it runs."""

    __slots__ = ("generation_id", "principal_key", "account_id", "entry", "stream", "started", "client_request_id",
                 "deployment", "first_token_at", "upstream_s", "prompt_bytes", "rate_limit")

    def __init__(self, *, account_id: str, key_id: str, entry: ModelEntry, stream: bool, started: float,
                 client_request_id: str | None, prompt_bytes: int) -> None:
        self.generation_id = new_generation_id()
        self.account_id = account_id
        self.principal_key = key_id
        self.entry = entry
        self.stream = stream
        self.started = started
        self.client_request_id = client_request_id
        self.deployment: Deployment | None = None
        self.first_token_at: float | None = None
        self.upstream_s = 0.0  # time spent waiting on the upstream
        self.prompt_bytes = prompt_bytes
        self.rate_limit: RateLimitStatus | None = None  # for the x-ratelimit-* headers

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def overhead_ms(self) -> float:
        """Time the gateway itself added: elapsed minus time waiting on the upstream."""
        return max(0.0, self.elapsed_ms() - self.upstream_s * 1000)

    def estimated_usage(self, output_parts: int) -> Usage:
        """The documented estimate when the upstream reported no usage: prompt text bytes / 3
        (rounded up) as input tokens, one output token per streamed content part."""
        return Usage(input_tokens=estimate_tokens(self.prompt_bytes), output_tokens=output_parts)

    def settlement(self, status: str, usage: Usage, *, estimated: bool = False, error: str | None = None,
                   cap: Callable[[int], int] | None = None) -> Settlement:
        """The row and charge to write. A failed call is recorded with its usage but charged nothing;
        `cap` turns the cost into the charge (the credit guard's ceiling)."""
        pricing = self.entry.pricing
        cost = cost_nanos(usage, pricing)
        prices = _price_texts(pricing)
        deployment = self.deployment
        ttft = None if self.first_token_at is None else (self.first_token_at - self.started) * 1000
        row = Generation(
            id=self.generation_id, account_id=self.account_id, key_id=self.principal_key, model=self.entry.id,
            provider=deployment.provider_name if deployment else "", status=status, stream=self.stream,
            upstream_model=deployment.upstream_model if deployment else "",
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            price_input=prices[0], price_output=prices[1], price_cache_read=prices[2], price_cache_write=prices[3],
            cost_nanos=cost if status != "failed" else 0, estimated=estimated, latency_ms=round(self.elapsed_ms(), 3),
            ttft_ms=None if ttft is None else round(ttft, 3), overhead_ms=round(self.overhead_ms(), 3),
            error=error[:500] if error else None, client_request_id=self.client_request_id, created_at=utcnow(),
        )
        charge = 0 if status == "failed" else cap(cost) if cap else cost
        note_settlement(self.entry.id, self.generation_id, status, charge)  # for the access log
        return Settlement(row, charge)

    def unit_settlement(self, status: str, units: int, unit_price: Decimal, *, error: str | None = None,
                        cap: Callable[[int], int] | None = None) -> Settlement:
        """The row and charge of a media call billed per unit (image, video, second): cost = units ×
        `unit_price` (USD), recorded with its unit, count and price so the row reproduces it; a failed
        call is recorded with 0 units and charged nothing."""
        billed = units if status != "failed" else 0
        cost = usd_to_nanos(unit_price * billed)
        base = self.settlement(status, NO_USAGE, error=error).generation
        row = msgspec.structs.replace(base, unit=self.entry.unit, units=billed, price_unit=format(unit_price, "f"),
                                      cost_nanos=cost)
        charge = 0 if status == "failed" else cap(cost) if cap else cost
        note_settlement(self.entry.id, self.generation_id, status, charge)
        return Settlement(row, charge)


@functools.lru_cache(maxsize=256)
def _price_texts(pricing: Pricing) -> tuple[str, str, str, str]:
    """The four prices as stored on a generation row, formatted once per catalog price."""
    return (format(pricing.input, "f"), format(pricing.output, "f"), format(pricing.cache_read, "f"),
            format(pricing.cache_write, "f"))
