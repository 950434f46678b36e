"""Accounts, keys, key limits, tiers and credit, as the edges (admin API, dashboards, CLI) ask for them.

Every change that other instances cache (a key, an account's tier or balance) is announced through
`announce`, so every instance sees it at once. Reads that show a balance first wait for the
settlements already answered (read-your-writes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.accounting import CreditGuard, SettlementWriter
from runapi.errors import InsufficientCredit, InvalidRequest
from runapi.limits import TierTable, pin_tier, promote_by_topups
from runapi.storage import (
    Account,
    AccountStore,
    ApiKey,
    Change,
    KeyLimits,
    Ledger,
    LedgerEntry,
    balances_by_account,
)

Announce = Callable[[Change], Awaitable[None]]


class AccountService:
    def __init__(self, store: AccountStore, ledger: Ledger, credit: CreditGuard, tiers: TierTable,
                 engine: AsyncEngine, settlements: SettlementWriter, announce: Announce) -> None:
        self._store = store
        self._ledger = ledger
        self._credit = credit
        self._engine = engine
        self._settlements = settlements
        self._announce = announce
        self.tiers = tiers

    async def create_account(self, name: str, tier: str = "free") -> Account:
        return await self._store.create_account(name, tier)

    async def get_account(self, account_id: str) -> Account:
        return await self._store.get_account(account_id)

    async def find_account(self, id_or_name: str) -> Account:
        """By ID or by name; raises `NotFound`."""
        return await self._store.find_account(id_or_name)

    async def list_accounts(self, offset: int = 0, limit: int | None = None, *,
                            newest_first: bool = False) -> list[Account]:
        """Accounts, oldest (or newest) first; a page of them with `offset` and `limit`."""
        return await self._store.list_accounts(offset, limit, newest_first=newest_first)

    async def count_accounts(self) -> int:
        return await self._store.count_accounts()

    async def balance(self, account_id: str) -> int:
        """The committed balance (Σ ledger, from its roll-up) in nano-dollars, counting every settlement
        answered so far."""
        await self._settlements.flush()
        return (await balances_by_account(self._engine, [account_id])).get(account_id, 0)

    async def available(self, account_id: str) -> int:
        """The balance less the holds of calls in flight."""
        return await self._credit.available(account_id)

    async def entries(self, account_id: str) -> list[LedgerEntry]:
        await self._settlements.flush()
        return await self._ledger.entries(account_id)

    async def create_key(self, account_id: str, name: str = "", expires_at: datetime | None = None
                         ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once, stored hashed)."""
        return await self._store.create_key(account_id, name, expires_at)

    async def get_key(self, key_id: str) -> ApiKey:
        return await self._store.get_key(key_id)

    async def list_keys(self, account_id: str) -> list[ApiKey]:
        return await self._store.list_keys(account_id)

    async def revoke_key(self, key_id: str, account_id: str | None = None) -> ApiKey:
        """Revoke a key (of `account_id`, if given); every instance refuses it at once."""
        key = await self._store.revoke_key(key_id, account_id=account_id)
        await self._announce(Change("key", key.id))
        return key

    async def set_key_limits(self, key_id: str, limits: KeyLimits, expires_at: datetime | None) -> ApiKey:
        key = await self._store.set_key_limits(key_id, limits, expires_at)
        await self._announce(Change("key", key.id))  # the new limits on every instance at once
        return key

    async def pin_tier(self, account_id: str, tier: str | None) -> Account:
        """Pin the account's tier (None: back to the tier its top-ups earn)."""
        await pin_tier(self._engine, self.tiers, account_id, tier)
        await self._announce(Change("account", account_id))
        return await self._store.get_account(account_id)

    async def add_credit(self, account_id: str, kind: str, amount_nanos: int, note: str = "") -> LedgerEntry:
        """Append a top-up, refund or adjustment; a top-up may earn a higher tier. Every instance
        sees the new balance (and tier) at once.

        A negative entry is taken as a credit hold first, like a call's charge: it can only take what
        neither the balance's other holds (calls in flight) nor earlier charges have taken, so it can
        never push the balance below zero once those calls are charged."""
        await self._settlements.flush()  # the ledger's own check counts every call answered so far
        hold = None
        if amount_nanos < 0:
            try:
                hold = await self._credit.reserve(account_id, -amount_nanos)
            except InsufficientCredit as exc:
                raise InvalidRequest("That adjustment would take the balance below zero (counting the calls "
                                     f"in flight): {exc.message}", param="amount_usd") from exc
        try:
            entry = await self._ledger.add_entry(account_id, kind, amount_nanos, note)
        except BaseException:
            if hold is not None:
                self._credit.release(hold)
            raise
        if hold is not None:
            self._credit.charged(hold, -amount_nanos, entry.id)
        if kind == "topup":
            await promote_by_topups(self._engine, self.tiers, account_id)
        await self._announce(Change("account", account_id))
        return entry
