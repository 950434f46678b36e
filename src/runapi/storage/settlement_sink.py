"""Where the settlement writer commits its batches: a lean SQLite or PostgreSQL writer, or the generic `Ledger`.

`create_settlement_sink` picks one, once, from the database URL. On PostgreSQL it is
`settlement_sink_pg.PostgresSettlementSink` (one statement per batch). On a SQLite file the
`SqliteSettlementSink` writes a whole batch on its own stdlib `sqlite3` connection in one
thread hop (BEGIN IMMEDIATE, an `executemany`, one INSERT per charge, COMMIT): SQLAlchemy over
aiosqlite spends 9 hops to its thread per batch and about 6× the CPU (bench/RESULTS.md).
In-memory SQLite keeps `Ledger.record`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.compiler import SQLCompiler

from runapi.storage.database import is_sqlite, sqlite_pragmas
from runapi.storage.ledger import Ledger, Settlement, charge_row, generation_row
from runapi.storage.schema import generations, ledger

__all__ = ["SettlementSink", "SqliteSettlementSink", "create_settlement_sink", "sqlite_file"]

_DIALECT = sqlite.dialect()
_IN_CHUNK = 500  # ids per `IN (...)`: below SQLite's oldest limit on bound variables (999)


class SettlementSink(Protocol):
    async def record(self, batch: list[Settlement]) -> dict[str, int]:
        """Write generation rows and their charges in one transaction; return {generation ID: ledger ID}
        for the charges written. Safe to retry: generations already present are skipped, with their charges."""
        ...

    async def close(self) -> None:
        """Release what the sink holds; call after the last `record`."""
        ...


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL; None for another backend or an in-memory database,
    which a second connection could not share."""
    if not is_sqlite(url):
        return None
    parsed = sa.engine.make_url(url)
    database = parsed.database or ""
    if database in ("", ":memory:") or "mode=memory" in database or parsed.query.get("mode") == "memory":
        return None
    return database


def create_settlement_sink(url: str, ledger_: Ledger) -> SettlementSink:
    """The settlement sink for this database: a `SqliteSettlementSink` on a SQLite file, a
    `PostgresSettlementSink` on PostgreSQL, else (in-memory SQLite) `ledger_`."""
    path = sqlite_file(url)
    if path is not None:
        return SqliteSettlementSink(path)
    if sa.engine.make_url(url).get_backend_name() == "postgresql":
        from runapi.storage.settlement_sink_pg import PostgresSettlementSink

        return PostgresSettlementSink(url)
    return ledger_


class _Insert:
    """An INSERT compiled once from the schema, with the dialect's bind processors of its columns."""

    def __init__(self, table: sa.Table, columns: Sequence[str]) -> None:
        compiled = table.insert().compile(dialect=_DIALECT, column_keys=list(columns))
        assert isinstance(compiled, SQLCompiler) and compiled.positiontup is not None
        self.sql = str(compiled)
        names = compiled.positiontup
        processors = [table.c[name].type.dialect_impl(_DIALECT).bind_processor(_DIALECT) for name in names]
        self._fields: list[tuple[str, Callable[[Any], Any] | None]] = list(zip(names, processors))

    def values(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[name] if process is None else process(row[name]) for name, process in self._fields)


class SqliteSettlementSink:
    """Settlements on a SQLite file, through one `sqlite3` connection owned by one thread.

    Same contract as `Ledger.record` and the same stored values: the statements and the value
    conversions come from the SQLAlchemy schema. The connection opens on the first batch.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="settlement-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._generations = _Insert(generations, [c.name for c in generations.c])
        self._charges = _Insert(ledger, [c.name for c in ledger.c if not c.primary_key])

    async def record(self, batch: list[Settlement]) -> dict[str, int]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._record, batch)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; each batch says BEGIN IMMEDIATE and COMMIT.
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        sqlite_pragmas(conn)
        self._conn = conn
        return conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _record(self, batch: list[Settlement]) -> dict[str, int]:
        conn = self._conn or self._connect()
        try:
            # IMMEDIATE takes the write lock up front, so the busy timeout covers the whole wait for it.
            conn.execute("BEGIN IMMEDIATE")
            try:
                written = self._insert(conn, batch)
            except sqlite3.IntegrityError:  # some rows are already there (a retried commit): skip those
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                present = self._present(conn, [s.generation.id for s in batch])
                written = self._insert(conn, [s for s in batch if s.generation.id not in present])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return written

    def _insert(self, conn: sqlite3.Connection, batch: list[Settlement]) -> dict[str, int]:
        if batch:
            conn.executemany(self._generations.sql, [self._generations.values(generation_row(s)) for s in batch])
        written: dict[str, int] = {}
        for s in batch:
            if s.charge_nanos > 0:
                cursor = conn.execute(self._charges.sql, self._charges.values(charge_row(s)))
                assert cursor.lastrowid is not None
                written[s.generation.id] = cursor.lastrowid
        return written

    @staticmethod
    def _present(conn: sqlite3.Connection, ids: list[str]) -> set[str]:
        present: set[str] = set()
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start:start + _IN_CHUNK]
            query = f"SELECT id FROM generations WHERE id IN ({', '.join('?' * len(chunk))})"
            present.update(row[0] for row in conn.execute(query, chunk))
        return present
