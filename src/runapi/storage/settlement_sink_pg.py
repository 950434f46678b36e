"""The lean PostgreSQL settlement sink: a whole batch in one statement, one round trip.

`Ledger.record` over SQLAlchemy and asyncpg spends a round trip each on BEGIN, the generation
rows, the charges and COMMIT, with SQLAlchemy's per-statement work around each. Here one prepared
statement carries the batch as arrays: a data-modifying CTE inserts the generation rows (`ON
CONFLICT (id) DO NOTHING`, so a retried batch skips what a lost acknowledgement already wrote) and
the charges of exactly the rows it inserted (and their write-offs, when a balance could not cover a
charge: `ledger.py`), and returns the charges' ledger IDs. One statement is one transaction. The
statement's columns and types come from `storage/schema.py`.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import sqlalchemy as sa

from runapi.storage.ledger import (
    WRITEOFF_NOTE,
    WRITEOFF_SUFFIX,
    Settlement,
    billed_nanos,
    charge_row,
    generation_row,
    writeoff_row,
)
from runapi.storage.schema import generations, ledger

_CHARGE_COLUMNS = ("account_id", "amount_nanos", "generation_id", "created_at")


def _pg_type(column: sa.Column[Any]) -> str:
    """The PostgreSQL array element type to send a column's values as."""
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return "bool"
    if isinstance(kind, sa.DateTime):
        return "timestamptz"
    if isinstance(kind, sa.Float):
        return "float8"
    if isinstance(kind, sa.Integer):  # BigInteger is an Integer
        return "int8"
    if isinstance(kind, sa.String):
        return "text"
    raise TypeError(f"no array type for column {column.name} ({kind!r})")


def _statement() -> str:
    names = [c.name for c in generations.c]
    arrays = ", ".join(f"${i}::{_pg_type(c)}[]" for i, c in enumerate(generations.c, start=1))
    first = len(names) + 1
    charge_types = [_pg_type(ledger.c[name]) for name in _CHARGE_COLUMNS]
    charge_arrays = ", ".join(f"${first + i}::{kind}[]" for i, kind in enumerate(charge_types))
    first += len(charge_types)
    writeoff_arrays = ", ".join(f"${first + i}::{kind}[]" for i, kind in enumerate(charge_types))
    note = first + len(charge_types)
    columns = ", ".join(names)
    return (
        f"WITH batch AS (SELECT * FROM unnest({arrays}) AS b({columns})), "
        f"inserted AS (INSERT INTO generations ({columns}) SELECT {columns} FROM batch "
        "ON CONFLICT (id) DO NOTHING RETURNING id), "
        "writeoffs AS (INSERT INTO ledger (account_id, kind, amount_nanos, generation_id, note, created_at) "
        f"SELECT w.account_id, 'writeoff', w.amount_nanos, w.generation_id || '{WRITEOFF_SUFFIX}', ${note}::text, "
        f"w.created_at FROM unnest({writeoff_arrays}) AS w({', '.join(_CHARGE_COLUMNS)}) "
        "JOIN inserted ON inserted.id = w.generation_id) "
        "INSERT INTO ledger (account_id, kind, amount_nanos, generation_id, note, created_at) "
        "SELECT c.account_id, 'charge', c.amount_nanos, c.generation_id, '', c.created_at "
        f"FROM unnest({charge_arrays}) AS c({', '.join(_CHARGE_COLUMNS)}) "
        "JOIN inserted ON inserted.id = c.generation_id "
        "RETURNING generation_id, id"
    )


def asyncpg_dsn(url: str) -> str:
    """A libpq-style DSN for asyncpg from the SQLAlchemy URL (`postgresql+asyncpg://…`)."""
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresSettlementSink:
    """Settlements on PostgreSQL through one asyncpg connection of its own (the writer sends one batch
    at a time). After any failure the connection is dropped and the next (retried) batch opens another."""

    def __init__(self, url: str, command_timeout: float = 10.0) -> None:
        self._dsn = asyncpg_dsn(url)
        self._command_timeout = command_timeout
        self._conn: asyncpg.Connection | None = None
        self._sql = _statement()
        self._columns = [c.name for c in generations.c]

    async def record(self, batch: list[Settlement]) -> dict[str, int]:
        rows = [generation_row(s) for s in batch]
        arrays = [[row[name] for row in rows] for name in self._columns]
        charged = [s for s in batch if billed_nanos(s) > 0]
        charges = [charge_row(s) for s in charged]
        arrays += [[charge[name] for charge in charges] for name in _CHARGE_COLUMNS]
        writeoffs = [{**row, "generation_id": s.generation.id} for s in charged if (row := writeoff_row(s)) is not None]
        arrays += [[writeoff[name] for writeoff in writeoffs] for name in _CHARGE_COLUMNS]
        conn = self._conn
        if conn is None or conn.is_closed():
            conn = self._conn = await asyncpg.connect(self._dsn, command_timeout=self._command_timeout)
        try:
            written = await conn.fetch(self._sql, *arrays, WRITEOFF_NOTE)
        except BaseException:  # whatever failed (a dropped or terminated connection, a cancel), start afresh
            await self._drop()
            raise
        return {row["generation_id"]: row["id"] for row in written}

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
