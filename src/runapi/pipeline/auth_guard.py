"""Brute-force throttling for API-key authentication: failure counters per client address and per
key prefix, with lockouts that slow guessing and never deny a valid key.

API keys carry 240 bits of randomness, so guessing one is hopeless; what the counters buy is that a
flood of made-up keys stands out (429s) and cannot take the database's capacity from other tenants.
A client address, or a key prefix (the key's first `PREFIX_LENGTH` characters, which an attacker
aiming at one known key keeps while spreading guesses over many addresses), with `max_failures`
unknown keys inside a minute is locked out for `lockout` seconds. While locked out:

- a valid key still authenticates, cached or not: the lockout never decides before the lookup
  (issue 20.4: one attacker behind a customer's address, or behind a shared proxy, locked out the
  customer's never-used keys and the dashboard sign-in);
- its unknown keys get 429 `too_many_failed_authentications` with `Retry-After` instead of 401;
- its lookups queue for a few database connections of their own (`Authenticator`), so a flood of
  guesses cannot crowd out other tenants' queries.

A revoked or expired key is not a guess (it exists): it is refused with 401 and not counted, so one
client still sending an old key locks nobody out. A value that cannot be a key at all (wrong
length, prefix or alphabet) is refused without a lookup.

`FailedAuthGuard` counts in this process; with Redis, `RedisFailedAuthGuard` (auth_guard_redis.py)
counts across every instance, so guesses spread over N instances are locked out at the same total.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from runapi.errors import RateLimited

WINDOW_S = 60.0
MAX_SUBJECTS = 100_000  # counters kept at most; the oldest windows are dropped first
PREFIX_LENGTH = 10  # the display prefix every key shows ("rk-" and 7 random characters)


def locked_out(retry_after: float) -> RateLimited:
    return RateLimited("Too many requests with invalid API keys from this address or for this key; "
                       "try again later.", retry_after=retry_after, code="too_many_failed_authentications")


def subjects(client: str | None, prefix: str | None) -> list[str]:
    """What a failure counts against: the client address and the key prefix, where known."""
    found = []
    if client:
        found.append(f"addr:{client}")
    if prefix:
        found.append(f"prefix:{prefix}")
    return found


class FailedAuthGuard:
    """Counts failed key lookups per client address and per key prefix. `max_failures` 0 turns it off."""

    def __init__(self, max_failures: int, lockout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.lockout = lockout
        self._clock = clock
        self._failures: dict[str, tuple[float, int]] = {}  # subject -> (window start, failures)
        self._locked: dict[str, float] = {}  # subject -> locked until

    async def locked(self, client: str | None, prefix: str | None) -> float | None:
        """Seconds until the address's or the prefix's lockout ends, or None if neither is locked out."""
        return self.locked_here(client, prefix)

    def locked_here(self, client: str | None, prefix: str | None) -> float | None:
        """`locked` from this process's own lockouts."""
        if not self._locked:
            return None
        now = self._clock()
        longest = None
        for subject in subjects(client, prefix):
            until = self._locked.get(subject)
            if until is None:
                continue
            if now >= until:
                del self._locked[subject]
            elif longest is None or until - now > longest:
                longest = until - now
        return longest

    def lock(self, subject: str, seconds: float) -> None:
        """Treat `subject` as locked out here for `seconds` (learnt from the shared counter)."""
        self._locked[subject] = self._clock() + seconds

    async def failed(self, client: str | None, prefix: str | None) -> None:
        """Record one unknown key from `client` with `prefix`."""
        self.count_failure(client, prefix)

    async def close(self) -> None:
        """Release what the guard holds (nothing here; the Redis guard closes its client)."""

    def count_failure(self, client: str | None, prefix: str | None) -> None:
        """Record one unknown key against this process's counters."""
        if self.max_failures <= 0:
            return
        now = self._clock()
        for subject in subjects(client, prefix):
            start, count = self._failures.get(subject, (now, 0))
            if now - start >= WINDOW_S:
                start, count = now, 0
            count += 1
            if count >= self.max_failures:
                self._locked[subject] = now + self.lockout
                self._failures.pop(subject, None)
                continue
            if len(self._failures) >= MAX_SUBJECTS and subject not in self._failures:
                self._prune(now)
            self._failures[subject] = (start, count)

    def _prune(self, now: float) -> None:
        for subject, (start, _) in list(self._failures.items()):
            if now - start >= WINDOW_S:
                del self._failures[subject]
        if len(self._failures) >= MAX_SUBJECTS:  # all recent: forget the oldest half
            for subject, _ in sorted(self._failures.items(), key=lambda item: item[1][0])[:MAX_SUBJECTS // 2]:
                del self._failures[subject]
        for subject, until in list(self._locked.items()):
            if until <= now:
                del self._locked[subject]
