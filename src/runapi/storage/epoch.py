"""The cache epoch: one counter that any writer bumps when cached facts change.

Every gateway instance polls it (one tiny query every half second) and drops its
key and balance caches when it moves, so a revocation or top-up made by the CLI or
another instance takes effect everywhere within a second.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from runapi.storage.database import read_one, reader
from runapi.storage.schema import cache_epoch


async def bump_epoch(conn: AsyncConnection) -> None:
    await conn.execute(cache_epoch.update().where(cache_epoch.c.id == 1).values(value=cache_epoch.c.value + 1))


async def read_epoch(engine: AsyncEngine) -> int:
    row = await read_one(reader(engine), sa.select(cache_epoch.c.value).where(cache_epoch.c.id == 1))
    return int(row[0] or 0) if row is not None else 0
