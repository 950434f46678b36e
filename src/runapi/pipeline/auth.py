"""API-key authentication with a cache, so the hot path needs no database read.

A positive entry lives until the cache epoch moves (revocation, tier change) or its
TTL passes; in-process revocations also evict at once. A revoked or expired key is
remembered as refused for as long, so a client that keeps sending one costs no reads.
Failed-authentication throttling (`auth_guard.py`) never refuses a valid key.
"""

from __future__ import annotations

import asyncio
import string
import time

import msgspec

from runapi.errors import AuthError
from runapi.pipeline.auth_guard import PREFIX_LENGTH, FailedAuthGuard, locked_out
from runapi.storage import (
    KEY_LENGTH,
    KEY_PREFIX,
    AccountStore,
    KeyLimits,
    hash_key,
    utcnow,
)

CACHE_TTL_S = 60.0
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
    def __init__(self, accounts: AccountStore, guard: FailedAuthGuard | None = None) -> None:
        self._accounts = accounts
        self.guard = guard or FailedAuthGuard(0, 0.0)
        self._cache: dict[str, tuple[Principal, float, float | None]] = {}
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
                return principal
            del self._cache[digest]
        refused = self._refused.get(digest)
        if refused is not None:
            if now < refused[1]:
                raise AuthError(_BAD_KEY)
            del self._refused[digest]
        prefix = secret[:PREFIX_LENGTH]
        locked = await self.guard.locked(client, prefix)
        key = None
        if could_be_key(secret):
            if locked is None:
                key = await self._accounts.key_by_hash(digest)
            else:
                async with self._suspect_lookups:
                    key = await self._accounts.key_by_hash(digest)
        if key is None:  # a guess
            await self.guard.failed(client, prefix)
            if locked is not None:
                raise locked_out(locked)
            raise AuthError(_BAD_KEY)
        if not key.usable(utcnow()):  # revoked or expired: it exists, so it is not a guess
            if len(self._refused) >= MAX_REFUSED:
                del self._refused[next(iter(self._refused))]
            self._refused[digest] = (key.id, now + CACHE_TTL_S)
            raise AuthError(_BAD_KEY)
        account = await self._accounts.get_account(key.account_id)
        principal = Principal(key_id=key.id, account_id=account.id, tier=account.tier, limits=key.limits)
        key_expiry = key.expires_at.timestamp() if key.expires_at else None
        self._cache[digest] = (principal, now + CACHE_TTL_S, key_expiry)
        return principal

    def forget_key(self, key_id: str) -> None:
        for digest, (principal, _, _) in list(self._cache.items()):
            if principal.key_id == key_id:
                del self._cache[digest]
        for digest, (refused_id, _) in list(self._refused.items()):
            if refused_id == key_id:  # e.g. an expired key given a later expiry
                del self._refused[digest]

    def forget_account(self, account_id: str) -> None:
        """Drop an account's cached keys (its tier changed): the next call re-reads them."""
        for digest, (principal, _, _) in list(self._cache.items()):
            if principal.account_id == account_id:
                del self._cache[digest]

    def clear(self) -> None:
        self._cache.clear()
        self._refused.clear()
