"""Throw-away PostgreSQL databases on the local server (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator

import asyncpg

PG_HOST = os.environ.get("RUNAPI_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("RUNAPI_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("RUNAPI_TEST_PG_USER", "postgres")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def temporary_database() -> Iterator[str]:
    """Create a fresh database; yields its SQLAlchemy URL; drops it afterwards."""
    name = f"runapi_test_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
