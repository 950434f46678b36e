"""One account's balance, and which of some given ledger entries it includes, from one snapshot."""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.storage.database import read_all, reader
from runapi.storage.schema import account_balances, ledger


def padded(ids: Collection[int]) -> list[int]:
    """`ids` with the last repeated up to the next power of two in length (the same set).

    An `IN` list's length is part of the statement's text, and the drivers keep a prepared statement
    per text and pooled connection (Python's sqlite3: the last 128; asyncpg: 100), each tens of KiB for
    a list of a few hundred IDs. Credit books compact at 256 charges, so every length up to there came
    by: a gateway's resident memory grew for minutes under load (the soak's growth, bench/RESULTS.md).
    Padded, the lengths are 1, 2, 4, ..., a few statements."""
    listed = list(ids)
    return listed + listed[-1:] * ((1 << (len(listed) - 1).bit_length()) - len(listed)) if listed else listed


async def balance_snapshot(engine: AsyncEngine, account_id: str, entry_ids: Collection[int]) -> tuple[int, set[int]]:
    """(Σ ledger in nano-dollars, the subset of `entry_ids`, ledger IDs of this account's entries,
    included in that sum).

    The sum is the account's row of `account_balances`, which the database's triggers keep in the
    transaction of every ledger insert (migration 0009): one row read, however long the history (a sum
    over the account's ledger grew with it, and the credit guard reads a snapshot every 256 charges:
    several times a second for a busy account). One statement, so both parts come from the same snapshot
    on PostgreSQL and SQLite alike: an entry committed while it runs is either in the sum and the
    subset, or in neither.
    """
    balance = sa.select(account_balances.c.balance_nanos).where(account_balances.c.account_id == account_id)
    total = sa.select(sa.literal(None, sa.BigInteger).label("id"),
                      sa.func.coalesce(balance.scalar_subquery(), 0, type_=sa.BigInteger).label("amount"))
    query: sa.Executable = total
    if entry_ids:
        # By primary key alone (the IDs are this account's charges): with the account in the condition,
        # PostgreSQL chose the account's index and fetched its whole history for each snapshot.
        seen = sa.select(ledger.c.id, sa.literal(0, sa.BigInteger).label("amount")).where(
            ledger.c.id.in_(padded(entry_ids)))
        query = sa.union_all(total, seen)
    rows = await read_all(reader(engine), query)  # one statement: no transaction around it
    balance_nanos = next(int(r.amount) for r in rows if r.id is None)
    return balance_nanos, {int(r.id) for r in rows if r.id is not None}
