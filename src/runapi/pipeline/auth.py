"""API-key authentication with a cache, so the hot path needs no database read.

A positive entry lives until it is invalidated: a revocation, new key limits or a tier change
evicts it at once in the process that made it, on every instance through Redis pub/sub, and
through the cache epoch (polled every half second) everywhere else, CLI changes included. So
the cache needs no short TTL; `CACHE_TTL_S` only bounds how long an entry could outlive a change
if every one of those paths failed. The cache is an LRU of at most `MAX_CACHED_KEYS` keys: a
tenant rotating many keys evicts the least recently used, never more than it adds. A key not in
the cache costs one database round trip (key and account in one statement). A revoked or expired
key is remembered as refused for `REFUSED_TTL_S`, so a client that keeps sending one costs no reads.
Failed-authentication throttling (`auth_guard.py`) never refuses a valid key.
"""

from __future__ import annotations

import asyncio
import string
import time
from collections import OrderedDict

import msgspec

from runapi.clock import utcnow
from runapi.errors import AuthError
from runapi.pipeline.auth_guard import PREFIX_LENGTH, FailedAuthGuard, locked_out
from runapi.storage import KEY_LENGTH, KEY_PREFIX, AccountStore, KeyLimits, hash_key

CACHE_TTL_S = 3600.0  # a fallback only: invalidation evicts changed keys at once (see above)
REFUSED_TTL_S = 60.0
MAX_CACHED_KEYS = 100_000  # valid keys cached at most (least recently used forgotten first)
MAX_REFUSED = 10_000  # revoked or expired keys remembered at most (oldest forgotten first)
SUSPECT_LOOKUPS = 2  # database lookups at once for keys from locked-out addresses or prefixes
_KEY_ALPHABET = frozenset(string.ascii_letters + string.digits + "-_")
_BAD_KEY = "Incorrect, expired or revoked API key."


def could_be_key(secret: str) -> bool:
    """Whether `secret` has the shape of a key this gateway issues (so it is worth a lookup)."""
    return (len(secret) == KEY_LENGTH and secret.startswith(KEY_PREFIX)
            and _KEY_ALPHABET.issuperset(secret[len(KEY_PREFIX):]))


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: a key and its account."""

    key_id: str
    account_id: str
    tier: str
    limits: KeyLimits = KeyLimits()  # the key's own limits, cached with it


class Authenticator:
    def __init__(self, accounts: AccountStore, guard: FailedAuthGuard | None = None,
                 max_cached: int = MAX_CACHED_KEYS) -> None:
        self._accounts = accounts
        self.guard = guard or FailedAuthGuard(0, 0.0)
        self._max_cached = max_cached
        # digest -> (principal, until, the key's own expiry as a timestamp): least recently used first
        self._cache: OrderedDict[str, tuple[Principal, float, float | None]] = OrderedDict()
        self._evictions = 0  # bumped by every forget: a lookup that raced one is not cached
        self._refused: dict[str, tuple[str, float]] = {}  # digest -> (key ID, until): revoked or expired
        self._suspect_lookups = asyncio.Semaphore(SUSPECT_LOOKUPS)

    async def authenticate(self, secret: str, client: str | None = None) -> Principal:
        """The principal for an API key, or `AuthError` (never echoing the key). A valid key always
        authenticates. `client` (an address) and the key's prefix are counted by the brute-force guard:
        while either is locked out, its unknown keys get `RateLimited` instead of `AuthError`, and its
        lookups share `SUSPECT_LOOKUPS` database connections."""
        if not secret:
            raise AuthError("Missing API key. Send it as `Authorization: Bearer <key>`.")
        digest = hash_key(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None:
            principal, expires, key_expiry = cached
            if now < expires and (key_expiry is None or time.time() < key_expiry):
                self._cache.move_to_end(digest)
                return principal
            del self._cache[digest]
        refused = self._refused.get(digest)
        if refused is not None:
            if now < refused[1]:
                raise AuthError(_BAD_KEY)
            del self._refused[digest]
        prefix = secret[:PREFIX_LENGTH]
        evictions = self._evictions
        locked = await self.guard.locked(client, prefix)
        found = None
        if could_be_key(secret):
            if locked is None:
                found = await self._accounts.key_and_account(digest)
            else:
                async with self._suspect_lookups:
                    found = await self._accounts.key_and_account(digest)
        if found is None:  # a guess
            await self.guard.failed(client, prefix)
            if locked is not None:
                raise locked_out(locked)
            raise AuthError(_BAD_KEY)
        key, account = found
        if not key.usable(utcnow()):  # revoked or expired: it exists, so it is not a guess
            if len(self._refused) >= MAX_REFUSED:
                del self._refused[next(iter(self._refused))]
            self._refused[digest] = (key.id, now + REFUSED_TTL_S)
            raise AuthError(_BAD_KEY)
        principal = Principal(key_id=key.id, account_id=account.id, tier=account.tier, limits=key.limits)
        if evictions != self._evictions:  # a change landed while we read: the row may predate it
            return principal
        key_expiry = key.expires_at.timestamp() if key.expires_at else None
        self._cache[digest] = (principal, now + CACHE_TTL_S, key_expiry)
        if len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)
        return principal

    def forget_key(self, key_id: str) -> None:
        self._evictions += 1
        for digest, (principal, _, _) in list(self._cache.items()):
            if principal.key_id == key_id:
                del self._cache[digest]
        for digest, (refused_id, _) in list(self._refused.items()):
            if refused_id == key_id:  # e.g. an expired key given a later expiry
                del self._refused[digest]

    def forget_account(self, account_id: str) -> None:
        """Drop an account's cached keys (its tier changed): the next call re-reads them."""
        self._evictions += 1
        for digest, (principal, _, _) in list(self._cache.items()):
            if principal.account_id == account_id:
                del self._cache[digest]

    def clear(self) -> None:
        self._evictions += 1
        self._cache.clear()
        self._refused.clear()
