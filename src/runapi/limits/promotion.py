"""Tier changes: automatic promotion by cumulative paid top-ups, and operator pins.

Promotion only ever raises a tier, and it happens in the same breath as the top-up
(the caller invokes it right after writing one), so a top-up that crosses a threshold
raises the account's limits at once: the cache epoch moves and every instance re-reads
the account. A pinned account keeps its tier until the operator unpins it; unpinning
returns it to the tier its top-ups earn.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from runapi.errors import InvalidRequest, NotFound
from runapi.limits.tiers import TierTable
from runapi.storage import accounts, bump_epoch, ledger


async def topups_total(conn: AsyncConnection, account_id: str) -> int:
    """Σ of an account's paid top-ups (nano-dollars); refunds and adjustments do not count."""
    query = sa.select(sa.func.coalesce(sa.func.sum(ledger.c.amount_nanos), 0)).where(
        ledger.c.account_id == account_id, ledger.c.kind == "topup")
    return int((await conn.execute(query)).scalar_one())


async def _locked_account(conn: AsyncConnection, account_id: str) -> tuple[str, bool]:
    """(tier, pinned) of an account, its row locked until the transaction ends (PostgreSQL)."""
    row = (await conn.execute(sa.select(accounts.c.tier, accounts.c.tier_pinned)
                              .where(accounts.c.id == account_id).with_for_update())).first()
    if row is None:
        raise NotFound(f"no account {account_id!r}")
    return str(row.tier), bool(row.tier_pinned)


async def promote_by_topups(engine: AsyncEngine, tiers: TierTable, account_id: str) -> str | None:
    """Raise an unpinned account to the best tier its top-ups earn. Returns the new tier, or None."""
    async with engine.begin() as conn:
        current, pinned = await _locked_account(conn, account_id)
        if pinned:
            return None
        earned = tiers.earned(await topups_total(conn, account_id))
        if tiers.rank(earned) <= tiers.rank(current):
            return None
        await conn.execute(accounts.update().where(accounts.c.id == account_id).values(tier=earned))
        await bump_epoch(conn)
    return earned


async def pin_tier(engine: AsyncEngine, tiers: TierTable, account_id: str, tier: str | None) -> str:
    """Pin `tier` (turning automatic promotion off), or with None unpin and return to the earned tier."""
    if tier is not None and tier not in tiers:
        raise InvalidRequest(f"unknown tier {tier!r}; configured tiers: {', '.join(tiers.tiers)}", param="tier")
    async with engine.begin() as conn:
        await _locked_account(conn, account_id)
        new = tier if tier is not None else tiers.earned(await topups_total(conn, account_id))
        await conn.execute(accounts.update().where(accounts.c.id == account_id)
                           .values(tier=new, tier_pinned=tier is not None))
        await bump_epoch(conn)
    return new
