"""The in-process rate limiter: one dict of buckets, no I/O. Correct for a single gateway process."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence

from runapi.limits.rates import (
    PERIOD_MS,
    Check,
    Clock,
    Decision,
    Quota,
    ScopeStatus,
    Ticket,
    adjust,
    check,
    drain,
)

CONCURRENCY_RETRY_MS = 1000
PRUNE_EVERY = 10_000


def _current(result: Check, limit: int, cost: int) -> tuple[int, int]:
    """(remaining, reset ms) of a bucket before a refused call: undo the call's cost if it was counted."""
    level = result.level - cost * PERIOD_MS if result.ok and limit else result.level
    now = check(level, limit, 0)
    return now.remaining, now.reset_ms


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
        self.empty_at = now_ms + max(-(-requests // max(1, quota.requests_per_minute)),
                                     -(-tokens // max(1, quota.tokens_per_minute)))


class MemoryRateLimiter:
    """Buckets in this process's memory, keyed by scope."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._admitted = 0

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def acquire(self, group: str, quotas: Sequence[Quota], tokens: int) -> Decision:
        now = self._now_ms()
        checks: list[tuple[_Bucket, Check, Check]] = []
        statuses: list[ScopeStatus] = []
        denied: tuple[str, str] | None = None
        retry_ms = 0
        for quota in quotas:
            bucket = self._buckets.get(quota.scope) or self._buckets.setdefault(quota.scope, _Bucket(now))
            req = check(drain(bucket.requests, bucket.requests_at, now, quota.requests_per_minute),
                        quota.requests_per_minute, 1)
            tok = check(drain(bucket.tokens, bucket.tokens_at, now, quota.tokens_per_minute),
                        quota.tokens_per_minute, quota.token_cost(tokens))
            checks.append((bucket, req, tok))
            statuses.append(ScopeStatus(quota, req.remaining, req.reset_ms, tok.remaining, tok.reset_ms))
            for dimension, result in (("requests", req), ("tokens", tok)):
                if not result.ok:
                    denied = denied or (dimension, quota.scope)
                    retry_ms = max(retry_ms, result.retry_ms)
            if quota.concurrent_requests and bucket.in_flight >= quota.concurrent_requests:
                denied = denied or ("concurrency", quota.scope)
                retry_ms = max(retry_ms, CONCURRENCY_RETRY_MS)
        if denied is not None:  # report the buckets as they stand, not as they would be after this call
            statuses = [ScopeStatus(q, *_current(req, q.requests_per_minute, 1), *_current(tok, q.tokens_per_minute,
                                                                                          q.token_cost(tokens)))
                        for q, (_, req, tok) in zip(quotas, checks, strict=True)]
            return Decision(tuple(statuses), denied=denied[0], denied_scope=denied[1],  # type: ignore[arg-type]
                            retry_after_ms=retry_ms)
        for quota, (bucket, req, tok) in zip(quotas, checks, strict=True):
            bucket.settle_levels(quota, req.level, tok.level, now)
            if quota.concurrent_requests:
                bucket.in_flight += 1
        self._admitted += 1
        if self._admitted % PRUNE_EVERY == 0:
            self._prune(now)
        ticket = Ticket(id=secrets.token_hex(8), group=group, quotas=tuple(quotas),
                        charges=tuple(q.token_cost(tokens) for q in quotas))
        return Decision(tuple(statuses), ticket=ticket)

    def release(self, ticket: Ticket, actual_tokens: int) -> None:
        now = self._now_ms()
        for quota, charged in zip(ticket.quotas, ticket.charges, strict=True):
            bucket = self._buckets.get(quota.scope)
            if bucket is None:
                continue
            if quota.concurrent_requests and bucket.in_flight > 0:
                bucket.in_flight -= 1
            if actual_tokens != charged and quota.tokens_per_minute:
                requests = drain(bucket.requests, bucket.requests_at, now, quota.requests_per_minute)
                tokens = drain(bucket.tokens, bucket.tokens_at, now, quota.tokens_per_minute)
                bucket.settle_levels(quota, requests, adjust(tokens, quota.tokens_per_minute, actual_tokens - charged),
                                     now)

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _prune(self, now_ms: int) -> None:
        """Forget idle scopes whose buckets have drained: their state equals a fresh bucket's."""
        for scope, bucket in list(self._buckets.items()):
            if bucket.in_flight == 0 and bucket.empty_at <= now_ms:
                del self._buckets[scope]
