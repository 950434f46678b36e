"""The admission step of the pipeline, and its "after": rate limits, concurrency and spend caps.

`LimitControl.admit()` runs before the credit hold. It checks the key's model allow-list,
admits the call against the account tier's and the key's own rate limits (one limiter
round trip, which on Redis also carries the credit hold: `Rider`) and counts its most
expensive outcome against the spend caps. It returns the `Admission`, which its caller (the
call's `Reservation`) closes exactly once: by `settled()` when the call's settlement is
committed (the token estimate is replaced by real usage, the charge counted as spent and the
concurrency slot freed), or by `close()` when the call ends without one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.errors import PermissionDenied, RateLimited
from runapi.limits.memory import MemoryRateLimiter
from runapi.limits.rates import (
    Clock,
    Quota,
    RateLimiter,
    RateLimitStatus,
    Ticket,
    go_duration,
)
from runapi.limits.redis_limiter import RedisRateLimiter
from runapi.limits.spend import RELOAD_S, Cap, Others, SpendGuard, SpendHold
from runapi.limits.tiers import TierSpec, TierTable
from runapi.storage import AutoPipeline, KeyLimits, Rider, Settlement

log = logging.getLogger("runapi.limits")

# Without max_tokens, a call is admitted to tokens/min as if it asked for this many output
# tokens (or the model's maximum, if lower); real usage replaces the estimate at settlement.
UNSET_MAX_TOKENS_ESTIMATE = 4096


class Caller(Protocol):
    """Who is calling (`pipeline.auth.Principal` is one)."""

    @property
    def key_id(self) -> str: ...
    @property
    def account_id(self) -> str: ...
    @property
    def tier(self) -> str: ...
    @property
    def limits(self) -> KeyLimits: ...


class Admission:
    """One admitted call. `status` feeds the `x-ratelimit-*` headers. Close it once; later closes do nothing."""

    __slots__ = ("status", "_control", "_ticket", "_spend", "_open")

    def __init__(self, control: LimitControl, status: RateLimitStatus | None, ticket: Ticket | None,
                 spend: SpendHold | None) -> None:
        self.status = status
        self._control = control
        self._ticket = ticket
        self._spend = spend
        self._open = True

    def follow(self, others: Others | None) -> None:
        """News of other processes' charges that came after admission (`SpendGuard.follow`)."""
        if self._spend is not None:
            self._control.spend.follow(self._spend, others)

    def finished(self, settlement: Settlement) -> None:
        """The call is over and its settlement durable (journaled): free its slot and correct tokens/min
        now; keep only its charge held against the spend caps until `settled` (the commit)."""
        self._finish(_tokens(settlement), settlement.charge_nanos)

    def settled(self, settlement: Settlement) -> None:
        """The call's settlement is committed: count its charge toward the spend caps, then close."""
        row = settlement.generation
        if settlement.ledger_id is not None and settlement.charge_nanos:
            self._control.spend.charged(row.key_id, row.account_id, settlement.charge_nanos, settlement.ledger_id,
                                        row.created_at)
        self.close(_tokens(settlement))

    def kept_in_ledger(self, key_id: str, account_id: str, amount: int, ledger_id: int, moment: datetime) -> None:
        """The call's credit hold was written to the ledger (a video task's `hold` entry): count it toward
        the spend caps as a charge (the cap's reads count `hold` entries too), then close."""
        if amount:
            self._control.spend.charged(key_id, account_id, amount, ledger_id, moment)
        self.close()

    def _finish(self, actual_tokens: int, charge_nanos: int) -> None:
        if not self._open:
            return
        if self._ticket is not None:
            self._control.limiter.release(self._ticket, actual_tokens)
            self._ticket = None
        if self._spend is not None:
            self._control.spend.shrink(self._spend, charge_nanos)

    def close(self, actual_tokens: int = 0) -> None:
        """The call is over (`actual_tokens` processed): free its slot, correct tokens/min, drop the spend hold."""
        if not self._open:
            return
        self._open = False
        if self._spend is not None:
            self._control.spend.release(self._spend)
        if self._ticket is not None:
            self._control.limiter.release(self._ticket, actual_tokens)


def _tokens(settlement: Settlement) -> int:
    """Every token the settled call processed, as tokens/min counts them."""
    row = settlement.generation
    return row.input_tokens + row.cache_read_tokens + row.cache_write_tokens + row.output_tokens


def _quotas(tier: TierSpec, account_id: str, key_id: str, limits: KeyLimits) -> list[Quota]:
    quotas = [Quota(f"acct:{account_id}", tier.requests_per_minute, tier.tokens_per_minute, tier.concurrent_requests)]
    if limits.requests_per_minute or limits.tokens_per_minute or limits.concurrent_requests:
        quotas.append(Quota(f"key:{key_id}", limits.requests_per_minute or 0, limits.tokens_per_minute or 0,
                            limits.concurrent_requests or 0))
    return quotas


class LimitControl:
    """Tiers, the rate limiter and the spend guard of one gateway process."""

    def __init__(self, tiers: TierTable, limiter: RateLimiter, spend: SpendGuard) -> None:
        self.tiers = tiers
        self.limiter = limiter
        self.spend = spend
        self._tier_caps = {name: spec.monthly_spend_cap_nanos for name, spec in tiers.tiers.items()}

    def quotas(self, caller: Caller) -> list[Quota]:
        return _quotas(self.tiers.get(caller.tier), caller.account_id, caller.key_id, caller.limits)

    def caps(self, caller: Caller) -> list[Cap]:
        month = self.spend.month()
        limits = caller.limits
        tier_cap = self._tier_caps.get(caller.tier)
        if tier_cap is None:
            tier_cap = self.tiers.get(caller.tier).monthly_spend_cap_nanos
        caps = [Cap("tier_monthly_spend_cap", ("account", caller.account_id, month), tier_cap)]
        if limits.spend_cap_nanos is not None:
            caps.append(Cap("key_spend_cap", ("key", caller.key_id, None), limits.spend_cap_nanos))
        if limits.monthly_spend_cap_nanos is not None:
            caps.append(Cap("key_monthly_spend_cap", ("key", caller.key_id, month), limits.monthly_spend_cap_nanos))
        return caps

    async def admit(self, caller: Caller, model_id: str, *, prompt_tokens: int,
                    output_tokens: int, max_cost_nanos: int, rider: Rider | None = None,
                    others: Callable[[], Others | None] | None = None) -> Admission:
        """Admit one call or raise `PermissionDenied` (model not allowed), `RateLimited` or `BudgetExceeded`.

        `rider` (the credit hold's script) runs in the limiter's round trip if the limiter admits the
        call; whoever passed it closes what it got, also when this raises. `others`, asked once the
        rider has run, tells the spend caps what other processes have charged the account
        (`SpendGuard.reserve`)."""
        allowed = caller.limits.allowed_models
        if allowed is not None and model_id not in allowed:
            raise PermissionDenied(f"This API key may not use the model `{model_id}`; it may use: "
                                   f"{', '.join(allowed) or 'no model'}.", param="model", code="model_not_allowed")
        quotas = self.quotas(caller)
        for quota in quotas:
            if quota.tokens_per_minute and prompt_tokens > quota.tokens_per_minute:
                raise RateLimited(
                    f"Request too large for {model_id} on tokens per min (TPM): Limit {quota.tokens_per_minute}, "
                    f"Requested {prompt_tokens}. The input must be reduced in order to run successfully.",
                    retry_after=0, code="request_too_large")
        decision = await self.limiter.acquire(caller.account_id, quotas, prompt_tokens + output_tokens, rider)
        status = decision.status
        if decision.ticket is None:
            raise self._refusal(caller, decision.denied or "requests", decision.denied_scope,
                                decision.retry_after_ms, status)
        spend: SpendHold | None = None
        try:
            spend = await self.spend.reserve(self.caps(caller), max_cost_nanos, others() if others else None)
        except BaseException:
            self.limiter.release(decision.ticket, 0)
            raise
        return Admission(self, status, decision.ticket, spend)

    def _refusal(self, caller: Caller, dimension: str, scope: str, retry_ms: int,
                 status: RateLimitStatus | None) -> RateLimited:
        whose = "this API key" if scope.startswith("key:") else f"the account's usage tier `{caller.tier}`"
        quota = next((q for q in self.quotas(caller) if q.scope == scope), None)
        if dimension == "concurrency":
            limit = quota.concurrent_requests if quota else 0
            message = f"Too many concurrent requests for {whose}: limit {limit}. Retry when a request finishes."
            code = "concurrency_limit_exceeded"
        else:
            unit = "requests per min (RPM)" if dimension == "requests" else "tokens per min (TPM)"
            limit = (quota.requests_per_minute if dimension == "requests" else quota.tokens_per_minute) if quota else 0
            message = (f"Rate limit reached for {whose} on {unit}: Limit {limit}. "
                       f"Please try again in {go_duration(retry_ms)}.")
            code = "rate_limit_exceeded"
        return RateLimited(message, retry_after=retry_ms / 1000, code=code,
                           headers=status.to_headers() if status else None)

    def invalidate(self) -> None:
        """Cached facts changed elsewhere (the cache epoch moved): reload spent totals."""
        self.spend.invalidate()

    async def close(self) -> None:
        await self.limiter.close()


def create_limit_control(tiers: TierTable, engine: AsyncEngine, redis: AutoPipeline | None = None,
                         clock: Clock = time.time, spend_reload: float = RELOAD_S) -> LimitControl:
    """In-process limits, or Redis-backed ones shared by every instance when `redis` (the process's
    pipeline to Redis; its builder closes the client) is given.
    `spend_reload`: seconds a cached spent total is trusted (then read again)."""
    limiter: RateLimiter = (RedisRateLimiter(redis.client, clock, pipeline=redis) if redis is not None
                            else MemoryRateLimiter(clock))
    return LimitControl(tiers, limiter, SpendGuard(engine, spend_reload))
