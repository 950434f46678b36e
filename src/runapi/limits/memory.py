"""The in-process rate limiter: one dict of buckets, no I/O. Correct for a single gateway process.

The GCRA arithmetic is `rates.drain` and `adjust`, with `rates.check` written out in `acquire`
(no `Check` objects on the hot path): the results are the same to the millisecond.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

from runapi.limits.rates import (
    PERIOD_MS,
    Clock,
    Decision,
    Quota,
    ScopeStatus,
    Ticket,
    adjust,
    drain,
)
from runapi.storage import Rider

CONCURRENCY_RETRY_MS = 1000
PRUNE_EVERY = 10_000

# Ticket IDs only need to be unique within the process (nothing outside this limiter sees them).
_ticket_ids = itertools.count(1)


def _standing(level: int, limit: int) -> tuple[int, int]:
    """(remaining, reset ms) of a bucket at `level`, as `rates.check(level, limit, 0)` reports them."""
    if limit <= 0:
        return 0, 0
    capacity = limit * PERIOD_MS
    return ((capacity - level) // PERIOD_MS if level < capacity else 0), -(-level // limit)


class _Bucket:
    __slots__ = ("requests", "requests_at", "tokens", "tokens_at", "in_flight", "empty_at")

    def __init__(self, now_ms: int) -> None:
        self.requests = 0
        self.requests_at = now_ms
        self.tokens = 0
        self.tokens_at = now_ms
        self.in_flight = 0
        self.empty_at = now_ms  # when both levels will have drained to zero

    def settle_levels(self, quota: Quota, requests: int, tokens: int, now_ms: int) -> None:
        self.requests, self.requests_at = requests, now_ms
        self.tokens, self.tokens_at = tokens, now_ms
        rpm, tpm = quota.requests_per_minute, quota.tokens_per_minute
        # ceil(level / max(1, limit)) for each dimension, the later of the two
        requests_empty = -(-requests // rpm) if rpm > 1 else requests
        tokens_empty = -(-tokens // tpm) if tpm > 1 else tokens
        self.empty_at = now_ms + (requests_empty if requests_empty > tokens_empty else tokens_empty)


class MemoryRateLimiter:
    """Buckets in this process's memory, keyed by scope."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._admitted = 0

    async def acquire(self, group: str, quotas: Sequence[Quota], tokens: int, rider: Rider | None = None) -> Decision:
        # A rider is a Redis script: it is not carried here (its `reply` stays None).
        now = int(self.clock() * 1000)
        buckets = self._buckets
        # per scope: (bucket, drained requests level, level after this call, same for tokens, token cost)
        plan: list[tuple[_Bucket, int, int, int, int, int]] = []
        denied: str | None = None
        denied_scope = ""
        retry_ms = 0
        for quota in quotas:
            scope = quota.scope
            bucket = buckets.get(scope)
            if bucket is None:
                bucket = buckets[scope] = _Bucket(now)
            rpm = quota.requests_per_minute
            tpm = quota.tokens_per_minute
            cost = quota.token_cost(tokens)
            # requests: drain, then check a cost of 1
            if rpm > 0:
                requests = drain(bucket.requests, bucket.requests_at, now, rpm)
                new_requests = requests + PERIOD_MS
                capacity = rpm * PERIOD_MS
                if new_requests > capacity:
                    new_requests = requests
                    if denied is None:
                        denied, denied_scope = "requests", scope
                    wait = -(-(requests + PERIOD_MS - capacity) // rpm)
                    if wait > retry_ms:
                        retry_ms = wait
            else:
                requests = new_requests = 0
            # tokens: drain, then check `cost`
            if tpm > 0:
                level = drain(bucket.tokens, bucket.tokens_at, now, tpm)
                new_level = level + cost * PERIOD_MS
                capacity = tpm * PERIOD_MS
                if new_level > capacity:
                    wait = -(-(new_level - capacity) // tpm)
                    new_level = level
                    if denied is None:
                        denied, denied_scope = "tokens", scope
                    if wait > retry_ms:
                        retry_ms = wait
            else:
                level = new_level = 0
            concurrent = quota.concurrent_requests
            if concurrent and bucket.in_flight >= concurrent:
                if denied is None:
                    denied, denied_scope = "concurrency", scope
                if retry_ms < CONCURRENCY_RETRY_MS:
                    retry_ms = CONCURRENCY_RETRY_MS
            plan.append((bucket, requests, new_requests, level, new_level, cost))
        if denied is not None:  # report the buckets as they stand, not as they would be after this call
            statuses = tuple(ScopeStatus(q, *_standing(requests, q.requests_per_minute),
                                         *_standing(level, q.tokens_per_minute))
                             for q, (_, requests, _, level, _, _) in zip(quotas, plan, strict=True))
            return Decision(statuses, denied=denied, denied_scope=denied_scope,  # type: ignore[arg-type]
                            retry_after_ms=retry_ms)
        scopes: list[ScopeStatus] = []
        for quota, (bucket, _, new_requests, _, new_level, _) in zip(quotas, plan, strict=True):
            rpm = quota.requests_per_minute
            tpm = quota.tokens_per_minute
            # after an admitted call: remaining = (capacity − level) // period, reset = ceil(level / limit);
            # the bucket empties at the later reset (0 for an unlimited dimension, whose level is 0)
            if rpm > 0:
                requests_left = (rpm * PERIOD_MS - new_requests) // PERIOD_MS
                requests_reset = -(-new_requests // rpm)
            else:
                requests_left = requests_reset = 0
            if tpm > 0:
                tokens_left = (tpm * PERIOD_MS - new_level) // PERIOD_MS
                tokens_reset = -(-new_level // tpm)
            else:
                tokens_left = tokens_reset = 0
            scopes.append(ScopeStatus(quota, requests_left, requests_reset, tokens_left, tokens_reset))
            bucket.requests = new_requests
            bucket.tokens = new_level
            bucket.requests_at = bucket.tokens_at = now
            bucket.empty_at = now + (requests_reset if requests_reset > tokens_reset else tokens_reset)
            if quota.concurrent_requests:
                bucket.in_flight += 1
        self._admitted += 1
        if self._admitted % PRUNE_EVERY == 0:
            self._prune(now)
        ticket = Ticket(id=f"{next(_ticket_ids):016x}", group=group, quotas=tuple(quotas),
                        charges=tuple([step[5] for step in plan]))
        return Decision(tuple(scopes), ticket=ticket)

    def release(self, ticket: Ticket, actual_tokens: int) -> None:
        now = int(self.clock() * 1000)
        buckets = self._buckets
        for quota, charged in zip(ticket.quotas, ticket.charges, strict=True):
            bucket = buckets.get(quota.scope)
            if bucket is None:
                continue
            if quota.concurrent_requests and bucket.in_flight > 0:
                bucket.in_flight -= 1
            tpm = quota.tokens_per_minute
            if actual_tokens != charged and tpm:  # drain both levels to now; replace the estimate by the real count
                requests = drain(bucket.requests, bucket.requests_at, now, quota.requests_per_minute)
                level = adjust(drain(bucket.tokens, bucket.tokens_at, now, tpm), tpm, actual_tokens - charged)
                bucket.settle_levels(quota, requests, level, now)

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _prune(self, now_ms: int) -> None:
        """Forget idle scopes whose buckets have drained: their state equals a fresh bucket's."""
        for scope, bucket in list(self._buckets.items()):
            if bucket.in_flight == 0 and bucket.empty_at <= now_ms:
                del self._buckets[scope]
