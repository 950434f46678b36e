"""Usage, spend, revenue and generations, as the edges report them.

Every read first waits for the settlements already answered (read-your-writes: a call answered a
moment ago may be journaled and not yet committed).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.accounting import SettlementWriter
from runapi.limits import LimitControl
from runapi.storage import (
    Generation,
    Ledger,
    UsageFilter,
    UsageRow,
    balances_by_account,
    spend_by_account,
    usage_by_day_and_model,
    usage_by_deployment,
)


class UsageService:
    def __init__(self, engine: AsyncEngine, ledger: Ledger, limits: LimitControl,
                 settlements: SettlementWriter) -> None:
        self._engine = engine
        self._ledger = ledger
        self._limits = limits
        self._settlements = settlements

    async def by_day_and_model(self, where: UsageFilter) -> list[UsageRow]:
        await self._settlements.flush()
        return await usage_by_day_and_model(self._engine, where)

    async def by_deployment(self, where: UsageFilter) -> list[UsageRow]:
        await self._settlements.flush()
        return await usage_by_deployment(self._engine, where)

    async def generation(self, generation_id: str, account_id: str | None = None) -> Generation:
        """One generation (of `account_id`, if given); raises `NotFound`."""
        await self._settlements.flush()
        return await self._ledger.generation(generation_id, account_id=account_id)

    async def generations(self, account_id: str | None = None, limit: int = 100) -> list[Generation]:
        """The latest generations, newest first."""
        await self._settlements.flush()
        return await self._ledger.generations(account_id, limit=limit)

    async def balances(self, account_ids: list[str] | None = None) -> dict[str, int]:
        """Balances in nano-dollars, of every account or of `account_ids` (accounts without entries are absent)."""
        await self._settlements.flush()
        return await balances_by_account(self._engine, account_ids)

    async def spend_by_account(self, account_ids: list[str] | None = None) -> dict[str, int]:
        """Lifetime spend in nano-dollars, of every account or of `account_ids`."""
        await self._settlements.flush()
        return await spend_by_account(self._engine, account_ids)

    def month(self) -> str:
        """The current month (`YYYY-MM`, UTC), as spend caps count it."""
        return self._limits.spend.month()

    async def key_spend(self, key_id: str) -> int:
        """A key's lifetime spend, as its spend cap counts it."""
        await self._settlements.flush()
        return await self._limits.spend.spent(("key", key_id, None))

    async def account_month_spend(self, account_id: str) -> int:
        """An account's spend this month, as its tier's monthly cap counts it."""
        await self._settlements.flush()
        return await self._limits.spend.spent(("account", account_id, self.month()))
