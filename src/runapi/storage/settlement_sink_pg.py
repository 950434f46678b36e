"""The lean PostgreSQL settlement sink: a whole batch in one statement, one round trip.

`Ledger.record` over SQLAlchemy and asyncpg spends a round trip each on BEGIN, the generation
rows, the charges and COMMIT, with SQLAlchemy's per-statement work around each. Here one prepared
statement carries the batch as two JSON texts that msgspec encodes in C: the generation records as
they are (`Generation` is a msgspec struct) and, for each charged generation, its charge and its
write-off (`billed_nanos`, `uncovered_nanos`: when a balance could not cover a charge, `ledger.py`).
The server expands them (`json_to_recordset`, each value through its column type's own input
function: integers and nanos exact, floats in their shortest round-trip form, timestamps with their
microseconds and an explicit UTC offset; the session's zone is UTC, as a zone-less value means
here). One typed array per column instead cost about twice the client CPU per batch, the server's
the same (bench/RESULTS.md).

A data-modifying CTE inserts the generation rows (`ON CONFLICT (id) DO NOTHING`, so a retried
batch skips what a lost acknowledgement already wrote), then the charges and write-offs of exactly
the rows it inserted, charges first, in batch order (the ledger IDs `Ledger.record` would give),
and returns the charges' ledger IDs. One statement is one transaction. The statement's columns
and types come from `storage/schema.py`.
"""

from __future__ import annotations

import math
from typing import Any

import asyncpg
import msgspec
import sqlalchemy as sa

from runapi.storage.ledger import (
    WRITEOFF_NOTE,
    WRITEOFF_SUFFIX,
    Settlement,
    billed_nanos,
    uncovered_nanos,
)
from runapi.storage.records import Generation
from runapi.storage.schema import generations

_FLOATS = tuple(c.name for c in generations.c if isinstance(c.type, sa.Float))


def _pg_type(column: sa.Column[Any]) -> str:
    """The PostgreSQL type a column's JSON value is read as."""
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
    raise TypeError(f"no JSON record type for column {column.name} ({kind!r})")


def _statement() -> str:
    names = [c.name for c in generations.c]
    if set(names) != set(Generation.__struct_fields__):
        raise TypeError("the generations table and the Generation record disagree on their columns")
    columns = ", ".join(names)
    record = ", ".join(f"{c.name} {_pg_type(c)}" for c in generations.c)
    entry = "account_id, kind, amount_nanos, generation_id, note, created_at"
    return (
        f"WITH inserted AS (INSERT INTO generations ({columns}) "
        f"SELECT {columns} FROM json_to_recordset($1::json) AS b({record}) "
        "ON CONFLICT (id) DO NOTHING RETURNING id, account_id, created_at), "
        "money AS (SELECT m.ord, m.billed, m.uncovered, i.id, i.account_id, i.created_at "
        "FROM ROWS FROM (json_to_recordset($2::json) AS (id text, billed int8, uncovered int8)) "
        "WITH ORDINALITY AS m(id, billed, uncovered, ord) JOIN inserted i ON i.id = m.id), "
        f"entries AS (INSERT INTO ledger ({entry}) "
        f"SELECT e.account_id, e.kind, e.amount_nanos, e.generation_id, e.note, e.created_at FROM ("
        "SELECT 0 AS part, ord, account_id, 'charge' AS kind, -billed AS amount_nanos, id AS generation_id, "
        "'' AS note, created_at FROM money "
        f"UNION ALL SELECT 1, ord, account_id, 'writeoff', uncovered, id || '{WRITEOFF_SUFFIX}', $3::text, "
        "created_at FROM money WHERE uncovered > 0) AS e ORDER BY e.part, e.ord "
        "RETURNING kind, generation_id, id) "
        "SELECT generation_id, id FROM entries WHERE kind = 'charge'"
    )


def _finite(record: Generation) -> Generation:
    """The record as msgspec can send it: a NaN or infinite float (JSON has none) as PostgreSQL's text
    for it (`float8in` reads "NaN", "Infinity"), which asyncpg's binary floats would have stored."""
    odd = {name: repr(value).replace("inf", "Infinity").replace("nan", "NaN")
           for name in _FLOATS if (value := getattr(record, name)) is not None and not math.isfinite(value)}
    return msgspec.structs.replace(record, **odd) if odd else record


def encode_batch(batch: list[Settlement]) -> tuple[str, str]:
    """The statement's two JSON parameters: the generation records, and each charged generation's
    charge and write-off (`billed_nanos`, and what the charge could not cover)."""
    records = [s.generation for s in batch]
    if not all(math.isfinite(v) for r in records for v in (r.latency_ms, r.ttft_ms or 0.0, r.overhead_ms or 0.0)):
        records = [_finite(r) for r in records]
    money = []
    for s in batch:
        billed = billed_nanos(s)
        if billed > 0:
            money.append({"id": s.generation.id, "billed": billed, "uncovered": uncovered_nanos(s)})
    return _ENCODE(records).decode(), _ENCODE(money).decode()


_ENCODE = msgspec.json.Encoder().encode


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

    async def record(self, batch: list[Settlement]) -> dict[str, int]:
        records, money = encode_batch(batch)
        conn = self._conn
        if conn is None or conn.is_closed():
            conn = self._conn = await asyncpg.connect(self._dsn, command_timeout=self._command_timeout,
                                                      server_settings={"TimeZone": "UTC"})
        try:
            written = await conn.fetch(self._sql, records, money, WRITEOFF_NOTE)
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
