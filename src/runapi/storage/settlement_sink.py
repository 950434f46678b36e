"""Where the settlement writer commits its batches: a lean SQLite or PostgreSQL writer, or the generic `Ledger`.

`create_settlement_sink` picks one, once, from the database URL. On PostgreSQL it is
`settlement_sink_pg.PostgresSettlementSink` (one statement per batch). On a SQLite file the
`SqliteSettlementSink` writes a whole batch on its own stdlib `sqlite3` connection (BEGIN
IMMEDIATE, two `executemany`, COMMIT), on the event loop's thread unless the write lock is taken:
SQLAlchemy over aiosqlite spends 9 hops to its thread per batch and about 6× the CPU
(bench/RESULTS.md). In-memory SQLite keeps `Ledger.record`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.compiler import SQLCompiler

from runapi.storage.database import is_sqlite, sqlite_pragmas
from runapi.storage.ledger import (
    Ledger,
    Settlement,
    billed_nanos,
    charge_row,
    writeoff_row,
)
from runapi.storage.records import Generation
from runapi.storage.schema import generations, ledger

__all__ = ["SettlementSink", "SqliteSettlementSink", "create_settlement_sink", "sqlite_file"]

log = logging.getLogger("runapi.settlement")

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


def _sqlite_datetime(value: datetime) -> str:
    """What SQLAlchemy's SQLite DATETIME stores ("YYYY-MM-DD HH:MM:SS.ffffff", the zone dropped), 5× faster."""
    return value.isoformat(" ", "microseconds")[:26]


class _Insert:
    """An INSERT compiled once from the schema, turning a msgspec record (or a dict) into its parameters
    with the dialect's bind processors (SQLite DATETIME through `_sqlite_datetime`; booleans need none)."""

    def __init__(self, table: sa.Table, columns: Sequence[str], record: type[msgspec.Struct] | None = None) -> None:
        compiled = table.insert().compile(dialect=_DIALECT, column_keys=list(columns))
        assert isinstance(compiled, SQLCompiler) and compiled.positiontup is not None
        self.sql = str(compiled)
        self.names = list(compiled.positiontup)
        self._processors: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(self.names):
            column_type = table.c[name].type
            if isinstance(column_type, sa.Boolean):
                continue  # sqlite3 binds True/False as 1/0, as SQLAlchemy's processor does
            if isinstance(column_type, sa.DateTime):
                self._processors.append((index, _sqlite_datetime))
                continue
            process = column_type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
            if process is not None:
                self._processors.append((index, process))
        fields = record.__struct_fields__ if record is not None else ()
        self._order = [fields.index(name) for name in self.names] if record is not None else []

    def values(self, row: dict[str, Any]) -> list[Any]:
        out = [row[name] for name in self.names]
        return self._process(out)

    def record_values(self, record: msgspec.Struct) -> list[Any]:
        """The parameters for a record whose fields are this INSERT's columns (any order)."""
        fields = msgspec.structs.astuple(record)
        return self._process([fields[i] for i in self._order])

    def _process(self, out: list[Any]) -> list[Any]:
        for index, process in self._processors:
            if out[index] is not None:
                out[index] = process(out[index])
        return out


class SqliteSettlementSink:
    """Settlements on a SQLite file through stdlib `sqlite3`, committed on the event loop's own thread
    while the write lock is free.

    Same contract as `Ledger.record` and the same stored values: the statements and the value
    conversions come from the SQLAlchemy schema. A batch of a few dozen rows commits in a fraction of
    a millisecond (WAL, no fsync per commit); handing it to a thread instead cost more CPU than the
    commit itself (GIL hand-offs and context switches: bench/RESULTS.md). So the loop's connection
    never waits: it has no busy timeout and no automatic checkpoint. A batch is committed in runs of
    at most `inline_rows` rows, one transaction each, the loop serving requests between them. While
    the thread checkpoints the WAL (every `checkpoint_rows` rows committed on the loop), the next run
    waits for it (the journal made the batch durable already), so the checkpoint copies every frame
    and the WAL file stays bounded. A run goes to the sink's thread (whose connection waits for the
    lock as long as the other connections do) only when the lock is taken by another process or
    connection. Queued behind a checkpoint in the thread, as batches were before, a run of 300 rows took
    100-270 ms under load (`sqlite3` gives up the GIL for every row's step and waits up to the switch
    interval to get it back from the busy loop), long enough for the writer's backlog to fill and
    callers to wait: the p99 of JSON at c=16 was 8-11× its p50. Connections open on first use.
    """

    def __init__(self, path: str, inline_rows: int = 64, checkpoint_rows: int = 1000) -> None:
        self._path = path
        self._inline_rows = inline_rows
        self._checkpoint_rows = checkpoint_rows
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="settlement-sqlite")
        self._loop_conn: sqlite3.Connection | None = None
        self._conn: sqlite3.Connection | None = None  # the thread's
        self._since_checkpoint = 0
        self._checkpoint: asyncio.Future[None] | None = None
        self._generations = _Insert(generations, [c.name for c in generations.c], Generation)
        self._charges = _Insert(ledger, [c.name for c in ledger.c])

    async def record(self, batch: list[Settlement]) -> dict[str, int]:
        written: dict[str, int] = {}
        for start in range(0, len(batch), self._inline_rows):
            if start:
                await asyncio.sleep(0)  # the loop serves requests between runs
            written.update(await self._record_run(batch[start:start + self._inline_rows]))
        return written

    async def _record_run(self, run: list[Settlement]) -> dict[str, int]:
        """One transaction on the loop's connection, after any running checkpoint; in the thread if the
        write lock is taken."""
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])  # its failure is logged by `_checkpointed`
        conn = self._loop_conn or self._connect_loop()
        try:
            written = self._record(run, conn)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._record, run)
        self._since_checkpoint += len(run)
        if self._since_checkpoint >= self._checkpoint_rows and self._checkpoint is None:
            self._since_checkpoint = 0
            self._checkpoint = asyncio.get_running_loop().run_in_executor(self._executor, self._wal_checkpoint)
            self._checkpoint.add_done_callback(self._checkpointed)
        return written

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; each batch says BEGIN IMMEDIATE and COMMIT.
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        sqlite_pragmas(conn)
        self._conn = conn
        return conn

    def _connect_loop(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        sqlite_pragmas(conn)
        conn.execute("PRAGMA busy_timeout=0")  # a taken lock: hand the batch to the thread at once
        conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run in the thread (`_wal_checkpoint`)
        self._loop_conn = conn
        return conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _wal_checkpoint(self) -> None:
        conn = self._conn or self._connect()
        # PASSIVE, as SQLite's own automatic checkpoint: the loop sends its batches here meanwhile, so the
        # checkpoint copies every frame and the next commit writes the WAL from its start (a bounded file).
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpoint = None
        if not done.cancelled() and done.exception() is not None:
            log.warning("SQLite WAL checkpoint failed (retried later)", exc_info=done.exception())

    def _record(self, batch: list[Settlement], conn: sqlite3.Connection | None = None) -> dict[str, int]:
        conn = conn or self._conn or self._connect()
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
        """Both INSERTs as `executemany`. The charges' ledger IDs are given, following the highest
        present: this connection holds the write lock (BEGIN IMMEDIATE), so nobody takes them meanwhile."""
        if not batch:
            return {}
        conn.executemany(self._generations.sql, [self._generations.record_values(s.generation) for s in batch])
        charged = [s for s in batch if billed_nanos(s) > 0]
        if not charged:
            return {}
        (highest,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM ledger").fetchone()
        written = {s.generation.id: highest + n for n, s in enumerate(charged, start=1)}
        rows = [{**charge_row(s), "id": written[s.generation.id]} for s in charged]
        writeoffs = [row for row in map(writeoff_row, charged) if row is not None]  # rare: after the charges
        rows += [{**row, "id": highest + len(charged) + n} for n, row in enumerate(writeoffs, start=1)]
        conn.executemany(self._charges.sql, [self._charges.values(row) for row in rows])
        return written

    @staticmethod
    def _present(conn: sqlite3.Connection, ids: list[str]) -> set[str]:
        present: set[str] = set()
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start:start + _IN_CHUNK]
            query = f"SELECT id FROM generations WHERE id IN ({', '.join('?' * len(chunk))})"
            present.update(row[0] for row in conn.execute(query, chunk))
        return present
