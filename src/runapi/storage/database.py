"""Engines and schema management for SQLite (default) and PostgreSQL, chosen by URL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision: the one the code runs on. `tests/test_migrations.py` checks it against
# the migration scripts, so `runapi serve` checks the schema without Alembic, its Mako templates and the
# scripts in memory (7 MiB of a worker's imports); `runapi db upgrade` imports them.
HEAD_REVISION = "0011"


class SchemaMismatch(Exception):
    """The database schema is not the one this version of RunAPI knows."""


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_pragmas(dbapi_connection: Any, _record: Any = None) -> None:
    """Set the pragmas every SQLite connection of RunAPI uses (WAL, NORMAL sync, busy timeout, FKs)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """An async engine with the right pool and pragmas for the backend.

    PostgreSQL connections are pinged at checkout, so every caller of the engine (admin API, reports,
    tasks) survives a database restart without an error. SQLAlchemy's `pool_pre_ping` does it in three
    round trips (BEGIN, an empty statement, ROLLBACK) on a connection not yet in autocommit; `_ping`
    sends the empty statement alone. The request path reads only on a cache miss (`read_all`, which
    also retries a read whose connection dropped between the ping and the statement)."""
    if is_sqlite(url):
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    engine = create_async_engine(url, pool_size=10, max_overflow=20)
    event.listen(engine.sync_engine, "checkout", _ping)
    return engine


def _ping(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """One round trip on a pooled PostgreSQL connection before it is handed out; a dead one is
    replaced (the pool retries the checkout on `DisconnectionError`)."""
    try:
        await_only(dbapi_connection.driver_connection.fetchrow(";"))
    except Exception as exc:  # any failure means this connection is unusable
        raise DisconnectionError(f"pooled connection failed its ping: {exc!r}") from exc


def reader(engine: AsyncEngine) -> AsyncEngine:
    """`engine` for single-statement reads: on PostgreSQL in autocommit (one round trip per read,
    no BEGIN and ROLLBACK around it; one statement still sees one snapshot); SQLite as it is."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


async def read_all(engine: AsyncEngine, query: sa.Executable) -> list[Any]:
    """The rows (`sa.Row`) of one read statement, retried once if its connection turned out to be
    dropped (a database restart, an idle cut): the retry gets a new connection."""
    for attempt in (1, 2):
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(query)).all())
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


async def read_one(engine: AsyncEngine, query: sa.Executable) -> Any:
    """The first row (`sa.Row`) of one read statement, or None (retried as `read_all`)."""
    rows = await read_all(engine, query)
    return rows[0] if rows else None


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Run the Alembic migrations up to `revision` (blocking; call from sync code)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def head_revision() -> str:
    return HEAD_REVISION


async def current_revision(engine: AsyncEngine) -> str | None:
    """The schema's revision in Alembic's `alembic_version` table (None: no table or no row yet)."""
    async with engine.connect() as conn:
        if not await conn.run_sync(lambda sync_conn: sa.inspect(sync_conn).has_table("alembic_version")):
            return None
        rows: list[str] = list((await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars())
    if len(rows) > 1:
        raise SchemaMismatch(f"the database has several schema revisions ({', '.join(sorted(rows))})")
    return rows[0] if rows else None


async def check_schema(engine: AsyncEngine) -> None:
    """Refuse to run on a schema this version does not know; say how to fix it."""
    current, head = await current_revision(engine), head_revision()
    if current != head:
        raise SchemaMismatch(
            f"database schema is at revision {current or 'none (empty database)'}, this RunAPI needs {head}: "
            "run `runapi db upgrade` first"
        )


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
