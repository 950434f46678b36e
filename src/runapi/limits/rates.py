"""Rate limits: the `RateLimiter` seam, its values, and the pure GCRA arithmetic both backends share.

Each limited dimension (requests/min, tokens/min) is a GCRA bucket kept as an integer
`level` in cost·milliseconds: admitting cost `c` adds `c × PERIOD_MS`, and the level drains
by `limit` every millisecond, so a full bucket (`limit × PERIOD_MS`) empties in one period.
A call passes when `level + c × PERIOD_MS ≤ limit × PERIOD_MS`. This allows a burst of
`limit` and then a steady `limit` per period, with no fixed-window edge where 2×limit could
pass; `Retry-After` is exact: the time until the bucket has drained enough for this call.
Concurrency is a count of calls admitted and not yet released.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import msgspec

from runapi.storage import Rider

PERIOD_MS = 60_000
Clock = Callable[[], float]  # wall-clock seconds (shared by instances through Redis)
Dimension = Literal["requests", "tokens", "concurrency"]


class Quota(msgspec.Struct, frozen=True):
    """The limits of one scope (an account's tier, or a key). 0 means unlimited."""

    scope: str
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    concurrent_requests: int = 0

    def token_cost(self, tokens: int) -> int:
        """Tokens charged to this scope's bucket: never more than the bucket holds, so a call
        larger than a whole minute is admitted into an empty bucket and its real usage,
        charged at settlement, then holds the next calls back for as long as it takes."""
        return min(tokens, self.tokens_per_minute) if self.tokens_per_minute else tokens


class ScopeStatus(msgspec.Struct, frozen=True):
    """One scope's state after an admission decision (remaining counts, resets in ms)."""

    quota: Quota
    remaining_requests: int
    reset_requests_ms: int
    remaining_tokens: int
    reset_tokens_ms: int


def go_duration(ms: int) -> str:
    """A duration the way OpenAI writes it in `x-ratelimit-reset-*`: `20ms`, `1.5s`, `6m0s`."""
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


class RateLimitStatus(msgspec.Struct, frozen=True):
    """What `x-ratelimit-*` headers report: the tightest scope for each dimension."""

    limit_requests: int
    remaining_requests: int
    reset_requests_ms: int
    limit_tokens: int
    remaining_tokens: int
    reset_tokens_ms: int

    @classmethod
    def of(cls, scopes: Sequence[ScopeStatus]) -> RateLimitStatus | None:
        # The first scope with the fewest remaining (ties: the latest reset) for each dimension;
        # one pass, no key tuples: this runs for every admitted call.
        r: ScopeStatus | None = None
        t: ScopeStatus | None = None
        for s in scopes:
            quota = s.quota
            if quota.requests_per_minute and (
                    r is None or s.remaining_requests < r.remaining_requests
                    or (s.remaining_requests == r.remaining_requests and s.reset_requests_ms > r.reset_requests_ms)):
                r = s
            if quota.tokens_per_minute and (
                    t is None or s.remaining_tokens < t.remaining_tokens
                    or (s.remaining_tokens == t.remaining_tokens and s.reset_tokens_ms > t.reset_tokens_ms)):
                t = s
        if r is None:
            if t is None:
                return None
            return cls(0, 0, 0, t.quota.tokens_per_minute, t.remaining_tokens, t.reset_tokens_ms)
        if t is None:
            return cls(r.quota.requests_per_minute, r.remaining_requests, r.reset_requests_ms, 0, 0, 0)
        return cls(r.quota.requests_per_minute, r.remaining_requests, r.reset_requests_ms,
                   t.quota.tokens_per_minute, t.remaining_tokens, t.reset_tokens_ms)

    def to_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.limit_requests:
            headers["x-ratelimit-limit-requests"] = str(self.limit_requests)
            headers["x-ratelimit-remaining-requests"] = str(self.remaining_requests)
            headers["x-ratelimit-reset-requests"] = go_duration(self.reset_requests_ms)
        if self.limit_tokens:
            headers["x-ratelimit-limit-tokens"] = str(self.limit_tokens)
            headers["x-ratelimit-remaining-tokens"] = str(self.remaining_tokens)
            headers["x-ratelimit-reset-tokens"] = go_duration(self.reset_tokens_ms)
        return headers


class Ticket(msgspec.Struct, frozen=True):
    """An admitted call: what to give back at release. `charges[i]` is the tokens charged to `quotas[i]`."""

    id: str
    group: str
    quotas: tuple[Quota, ...]
    charges: tuple[int, ...]


class Decision(msgspec.Struct, frozen=True):
    """The outcome of one admission: a ticket if admitted, else the dimension and the wait."""

    scopes: tuple[ScopeStatus, ...]
    ticket: Ticket | None = None
    denied: Dimension | None = None
    denied_scope: str = ""
    retry_after_ms: int = 0

    @property
    def status(self) -> RateLimitStatus | None:
        return RateLimitStatus.of(self.scopes)


class RateLimiter(Protocol):
    """Admission against several scopes at once: all pass and are charged, or none is."""

    clock: Clock

    async def acquire(self, group: str, quotas: Sequence[Quota], tokens: int, rider: Rider | None = None) -> Decision:
        """Admit one call costing `tokens` (estimated) in every scope, or say why not and for how long.

        `group` names the account: all its scopes live together (one Redis slot). If admitted,
        `rider` runs in the same round trip where the backend can (see `Rider`)."""

    def release(self, ticket: Ticket, actual_tokens: int) -> None:
        """The call is over: free its concurrency slot and replace the token estimate by `actual_tokens`.

        Never blocks; a remote backend applies it shortly after (see `flush`)."""

    async def flush(self) -> None:
        """Wait until every release so far has been applied."""

    async def close(self) -> None:
        """Apply pending releases and free connections."""


# --- the arithmetic, shared by the memory backend and mirrored by the Redis Lua script -------


def drain(level: int, last_ms: int, now_ms: int, limit: int) -> int:
    """The bucket's level at `now_ms`, given its level at `last_ms`."""
    if limit <= 0:
        return 0
    if now_ms > last_ms:
        level -= (now_ms - last_ms) * limit
    return level if level > 0 else 0


class Check(msgspec.Struct, frozen=True):
    ok: bool
    level: int  # the level to store if every dimension passes
    remaining: int
    reset_ms: int
    retry_ms: int


def check(level: int, limit: int, cost: int) -> Check:
    """Would `cost` fit in a bucket of `limit` per period at `level`? (`limit` 0: unlimited.)"""
    if limit <= 0:
        return Check(True, level, 0, 0, 0)
    capacity = limit * PERIOD_MS
    new = level + cost * PERIOD_MS
    if new <= capacity:
        return Check(True, new, (capacity - new) // PERIOD_MS, -(-new // limit), 0)
    return Check(False, level, max(0, capacity - level) // PERIOD_MS, -(-level // limit), -(-(new - capacity) // limit))


def adjust(level: int, limit: int, delta: int) -> int:
    """The level after replacing an estimate by the real count (`delta` = real − estimate)."""
    if limit <= 0:
        return level
    return max(0, level + delta * PERIOD_MS)
