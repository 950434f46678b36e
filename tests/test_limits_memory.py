"""The in-process limiter inlines the GCRA arithmetic of `rates.py` for speed: it must decide, report
and store exactly what `rates.drain`/`check`/`adjust` give, on any traffic (a reference model here)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import msgspec
import pytest

from runapi.limits import MemoryRateLimiter, Quota, RateLimitStatus, memory
from runapi.limits.rates import (
    PERIOD_MS,
    Check,
    Decision,
    ScopeStatus,
    adjust,
    check,
    drain,
)
from tests.support.clock import ManualClock


class _Reference:
    """GCRA buckets written directly from the shared helpers: {scope: [requests, at, tokens, at, in_flight]}."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.buckets: dict[str, list[int]] = {}

    def now(self) -> int:
        return int(self.clock() * 1000)

    def acquire(self, quotas: Sequence[Quota], tokens: int) -> tuple[tuple[ScopeStatus, ...], str | None, str, int]:
        now = self.now()
        denied: tuple[str, str] | None = None
        retry = 0
        results = []
        for q in quotas:
            b = self.buckets.setdefault(q.scope, [0, now, 0, now, 0])
            req = check(drain(b[0], b[1], now, q.requests_per_minute), q.requests_per_minute, 1)
            tok = check(drain(b[2], b[3], now, q.tokens_per_minute), q.tokens_per_minute, q.token_cost(tokens))
            results.append((q, b, req, tok))
            for dimension, result in (("requests", req), ("tokens", tok)):
                if not result.ok:
                    denied = denied or (dimension, q.scope)
                    retry = max(retry, result.retry_ms)
            if q.concurrent_requests and b[4] >= q.concurrent_requests:
                denied = denied or ("concurrency", q.scope)
                retry = max(retry, memory.CONCURRENCY_RETRY_MS)
        if denied is not None:
            def standing(result: Check, limit: int, cost: int) -> tuple[int, int]:
                level = result.level - cost * PERIOD_MS if result.ok and limit else result.level
                now_check = check(level, limit, 0)
                return now_check.remaining, now_check.reset_ms
            return (tuple(ScopeStatus(q, *standing(req, q.requests_per_minute, 1),
                                      *standing(tok, q.tokens_per_minute, q.token_cost(tokens)))
                          for q, _, req, tok in results), denied[0], denied[1], retry)
        for q, b, req, tok in results:
            b[0], b[1], b[2], b[3] = req.level, now, tok.level, now
            if q.concurrent_requests:
                b[4] += 1
        return tuple(ScopeStatus(q, req.remaining, req.reset_ms, tok.remaining, tok.reset_ms)
                     for q, _, req, tok in results), None, "", 0

    def release(self, quotas: Sequence[Quota], charges: Sequence[int], actual: int) -> None:
        now = self.now()
        for q, charged in zip(quotas, charges, strict=True):
            b = self.buckets.get(q.scope)
            if b is None:
                continue
            if q.concurrent_requests and b[4] > 0:
                b[4] -= 1
            if actual != charged and q.tokens_per_minute:
                b[0], b[1] = drain(b[0], b[1], now, q.requests_per_minute), now
                b[2] = adjust(drain(b[2], b[3], now, q.tokens_per_minute), q.tokens_per_minute, actual - charged)
                b[3] = now


def _levels(limiter: MemoryRateLimiter, scope: str) -> list[int]:
    b = limiter._buckets[scope]
    return [b.requests, b.requests_at, b.tokens, b.tokens_at, b.in_flight]


@pytest.mark.parametrize("seed", range(40))
async def test_the_memory_limiter_matches_the_shared_arithmetic(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "PRUNE_EVERY", 10**9)  # the reference never forgets a bucket
    rng = random.Random(seed)
    clock = ManualClock(1_800_000_000.0)
    limiter, reference = MemoryRateLimiter(clock), _Reference(clock)
    scopes = ["acct:a", "key:1", "key:2"]
    limits = [0, 1, 2, 3, 7, 60, 1000]
    open_tickets = []
    for _ in range(300):
        roll = rng.random()
        if roll < 0.15:
            clock.advance(rng.choice([0.001, 0.017, 0.5, 3, 12, 61, -0.004]))
        elif roll < 0.35 and open_tickets:
            ticket = open_tickets.pop(rng.randrange(len(open_tickets)))
            actual = rng.choice([0, 1, 5, 100, 5000, ticket.charges[0]])
            limiter.release(ticket, actual)
            reference.release(ticket.quotas, ticket.charges, actual)
        else:
            quotas = [Quota(s, rng.choice(limits), rng.choice([*limits, 100_000]), rng.choice([0, 0, 1, 2, 3]))
                      for s in rng.sample(scopes, rng.choice([1, 1, 2]))]
            tokens = rng.choice([0, 1, 3, 50, 999, 100_000])
            decision: Decision = await limiter.acquire("a", quotas, tokens)
            statuses, denied, denied_scope, retry = reference.acquire(quotas, tokens)
            assert decision.scopes == statuses
            assert (decision.denied, decision.denied_scope, decision.retry_after_ms) == (denied, denied_scope, retry)
            assert decision.status == RateLimitStatus.of(statuses)
            if denied is None:
                assert decision.ticket is not None
                assert decision.ticket.charges == tuple(q.token_cost(tokens) for q in quotas)
                open_tickets.append(decision.ticket)
            else:
                assert decision.ticket is None
        for scope in reference.buckets:
            assert _levels(limiter, scope) == reference.buckets[scope]


async def test_ticket_ids_are_unique_in_the_process() -> None:
    one, two = MemoryRateLimiter(ManualClock(0.0)), MemoryRateLimiter(ManualClock(0.0))
    ids = set()
    for limiter in (one, two):
        for _ in range(100):
            decision = await limiter.acquire("a", [Quota("acct:a")], 1)
            assert decision.ticket is not None
            ids.add(decision.ticket.id)
    assert len(ids) == 200


def test_the_tightest_scope_is_reported_first_on_ties() -> None:
    a, b = Quota("acct:a", 10, 100), Quota("key:k", 10, 100)
    tie = (ScopeStatus(a, 3, 100, 50, 9), ScopeStatus(b, 3, 200, 50, 9))
    assert RateLimitStatus.of(tie) == RateLimitStatus(10, 3, 200, 100, 50, 9)  # requests: the later reset
    assert RateLimitStatus.of((ScopeStatus(Quota("x"), 0, 0, 0, 0),)) is None
    only_tokens = RateLimitStatus.of((ScopeStatus(Quota("x", tokens_per_minute=5), 0, 0, 4, 12_000),))
    assert only_tokens == RateLimitStatus(0, 0, 0, 5, 4, 12_000)
    assert msgspec.structs.astuple(only_tokens)  # a plain struct, as before
