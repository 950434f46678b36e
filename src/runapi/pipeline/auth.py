"""API-key authentication with a cache, so the hot path needs no database read.

A positive entry lives until the cache epoch moves (revocation, tier change) or its
TTL passes; in-process revocations also evict at once.
"""

from __future__ import annotations

import time

import msgspec

from runapi.errors import AuthError
from runapi.pipeline.auth_guard import FailedAuthGuard
from runapi.storage import AccountStore, KeyLimits, hash_key
from runapi.storage.clock import utcnow

CACHE_TTL_S = 60.0


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: a key and its account."""

    key_id: str
    account_id: str
    tier: str
    limits: KeyLimits = KeyLimits()  # the key's own limits, cached with it


class Authenticator:
    def __init__(self, accounts: AccountStore, guard: FailedAuthGuard | None = None) -> None:
        self._accounts = accounts
        self.guard = guard or FailedAuthGuard(0, 0.0)
        self._cache: dict[str, tuple[Principal, float, float | None]] = {}

    async def authenticate(self, secret: str, client: str | None = None) -> Principal:
        """The principal for an API key, or `AuthError` (never echoing the key). `client` (an address)
        is counted by the brute-force guard: while it is locked out, keys not cached get `RateLimited`."""
        if not secret:
            raise AuthError("Missing API key. Send it as `Authorization: Bearer <key>`.")
        digest = hash_key(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None:
            principal, expires, key_expiry = cached
            if now < expires and (key_expiry is None or time.time() < key_expiry):
                return principal
            del self._cache[digest]
        await self.guard.check(client)
        key = await self._accounts.key_by_hash(digest)
        if key is None or not key.usable(utcnow()):
            await self.guard.failed(client)
            raise AuthError("Incorrect, expired or revoked API key.")
        account = await self._accounts.get_account(key.account_id)
        principal = Principal(key_id=key.id, account_id=account.id, tier=account.tier, limits=key.limits)
        key_expiry = key.expires_at.timestamp() if key.expires_at else None
        self._cache[digest] = (principal, now + CACHE_TTL_S, key_expiry)
        return principal

    def forget_key(self, key_id: str) -> None:
        for digest, (principal, _, _) in list(self._cache.items()):
            if principal.key_id == key_id:
                del self._cache[digest]

    def forget_account(self, account_id: str) -> None:
        """Drop an account's cached keys (its tier changed): the next call re-reads them."""
        for digest, (principal, _, _) in list(self._cache.items()):
            if principal.account_id == account_id:
                del self._cache[digest]

    def clear(self) -> None:
        self._cache.clear()
