"""Brute-force protection for API-key authentication: a per-client failure counter with a lockout.

API keys carry 240 bits of randomness, so guessing one is hopeless; what the counter buys is that a
flood of made-up keys from one client costs one dictionary lookup each instead of a database read,
and stands out (429s). A client (IP address) with `max_failures` unknown keys inside a minute is
locked out for `lockout` seconds: while locked, a key not already in the authenticator's cache is
refused with 429 without a lookup. Keys already proven (cached) keep working, so one abusive client
behind a shared proxy address cannot lock everyone else out of the gateway.

`FailedAuthGuard` counts in this process; with Redis, `RedisFailedAuthGuard` (auth_guard_redis.py)
counts across every instance, so an address spreading guesses over N instances is locked out at the
same total.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from runapi.errors import RateLimited

WINDOW_S = 60.0
MAX_CLIENTS = 100_000  # entries kept at most; the oldest windows are dropped first


def locked_out(retry_after: float) -> RateLimited:
    return RateLimited("Too many requests with invalid API keys from this address; try again later.",
                       retry_after=retry_after, code="too_many_failed_authentications")


class FailedAuthGuard:
    """Counts failed key lookups per client. `max_failures` 0 turns the guard off."""

    def __init__(self, max_failures: int, lockout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.lockout = lockout
        self._clock = clock
        self._failures: dict[str, tuple[float, int]] = {}  # client -> (window start, failures)
        self._locked: dict[str, float] = {}  # client -> locked until

    async def check(self, client: str | None) -> None:
        """Raise `RateLimited` if `client` is locked out (callers let cached keys through first)."""
        self.check_local(client)

    def check_local(self, client: str | None) -> None:
        """`check` against this process's own lockouts."""
        if client is None or not self._locked:
            return
        until = self._locked.get(client)
        if until is None:
            return
        now = self._clock()
        if now >= until:
            del self._locked[client]
            return
        raise locked_out(until - now)

    def lock(self, client: str, seconds: float) -> None:
        """Refuse `client`'s uncached keys here for `seconds` (learnt from the shared counter)."""
        self._locked[client] = self._clock() + seconds

    async def failed(self, client: str | None) -> None:
        """Record one unknown, revoked or expired key from `client`."""
        self.count_failure(client)

    async def close(self) -> None:
        """Release what the guard holds (nothing here; the Redis guard closes its client)."""

    def count_failure(self, client: str | None) -> None:
        """Record one unknown, revoked or expired key from `client`."""
        if client is None or self.max_failures <= 0:
            return
        now = self._clock()
        start, count = self._failures.get(client, (now, 0))
        if now - start >= WINDOW_S:
            start, count = now, 0
        count += 1
        if count >= self.max_failures:
            self._locked[client] = now + self.lockout
            self._failures.pop(client, None)
            return
        if len(self._failures) >= MAX_CLIENTS and client not in self._failures:
            self._prune(now)
        self._failures[client] = (start, count)

    def _prune(self, now: float) -> None:
        for client, (start, _) in list(self._failures.items()):
            if now - start >= WINDOW_S:
                del self._failures[client]
        if len(self._failures) >= MAX_CLIENTS:  # all recent: forget the oldest half
            for client, _ in sorted(self._failures.items(), key=lambda item: item[1][0])[:MAX_CLIENTS // 2]:
                del self._failures[client]
        for client, until in list(self._locked.items()):
            if until <= now:
                del self._locked[client]
