"""The append-only ledger and the generation rows written with their charges.

Balance = Σ ledger.amount_nanos. A charge row carries its generation's ID, which is
unique, so no generation can be charged twice even if a write is retried.

A charge is written at the generation's full cost. When the balance could not cover it all (the
call cost more than its hold and the free balance), a `writeoff` row in the same transaction
gives the uncovered part back: the balance ends where the capped charge leaves it, and the loss is
an explicit line (issue 20.8). The write-off's `generation_id` is its generation's ID followed by
`WRITEOFF_SUFFIX` (that column is unique, and 40 characters long).

A video task's credit hold is durable (`tasks.video_store`): a `hold` entry at submission and a
`release` entry when the task ends, each under a unique `generation_id` of its own.
"""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from runapi.clock import as_utc, utcnow
from runapi.errors import InvalidRequest, NotFound
from runapi.storage.epoch import bump_epoch
from runapi.storage.records import Generation, LedgerEntry
from runapi.storage.schema import generations, ledger

ENTRY_KINDS = ("topup", "charge", "refund", "adjustment", "writeoff", "hold", "release")
_WRITTEN_BY_THE_GATEWAY = ("charge", "writeoff", "hold", "release")  # not by hand (add_entry)
WRITEOFF_SUFFIX = ":wo"
# A video task's durable credit hold and its release (`tasks/video_store.py`): `generation_id` is one of these
# prefixes and the task ID's hex part (`task_<hex>`), so spend caps can find the task's key (`limits/spend.py`).
HOLD_PREFIX = "hold-"
RELEASE_PREFIX = "release-"
TASK_ID_PREFIX = "task_"
WRITEOFF_NOTE = "the balance could not cover this generation's cost"


def _entry(row: Any) -> LedgerEntry:
    return LedgerEntry(id=row.id, account_id=row.account_id, kind=row.kind, amount_nanos=row.amount_nanos,
                       generation_id=row.generation_id, note=row.note, created_at=as_utc(row.created_at))  # type: ignore[arg-type]


def _generation(row: Any) -> Generation:
    data = dict(row._mapping)
    data["created_at"] = as_utc(data["created_at"])
    return Generation(**data)


class Settlement:
    """A generation to record, and what to charge for it (0 for a failed generation)."""

    __slots__ = ("generation", "charge_nanos", "ledger_id")

    def __init__(self, generation: Generation, charge_nanos: int) -> None:
        self.generation = generation
        self.charge_nanos = charge_nanos
        self.ledger_id: int | None = None  # the charge's ledger entry, once committed


def generation_row(settlement: Settlement) -> dict[str, Any]:
    """The `generations` row of a settlement, by column name."""
    return {f: getattr(settlement.generation, f) for f in Generation.__struct_fields__}


def billed_nanos(settlement: Settlement) -> int:
    """What the generation's charge row says it cost: its full cost (never less than the charge)."""
    return max(settlement.generation.cost_nanos, settlement.charge_nanos)


def charge_row(settlement: Settlement) -> dict[str, Any]:
    """The `ledger` charge row of a settlement, by column name (all but the generated `id`): the
    generation's full cost. Written when `billed_nanos` > 0."""
    row = settlement.generation
    return {"account_id": row.account_id, "kind": "charge", "amount_nanos": -billed_nanos(settlement),
            "generation_id": row.id, "note": "", "created_at": row.created_at}


def uncovered_nanos(settlement: Settlement) -> int:
    """What a charge row bills beyond what the balance covered (`charge_nanos`): the write-off, if > 0."""
    return billed_nanos(settlement) - settlement.charge_nanos


def writeoff_row(settlement: Settlement) -> dict[str, Any] | None:
    """The `ledger` write-off row of a settlement whose charge the balance could not cover in full
    (what it cost beyond `charge_nanos`), or None."""
    uncovered = uncovered_nanos(settlement)
    if uncovered <= 0:
        return None
    row = settlement.generation
    return {"account_id": row.account_id, "kind": "writeoff", "amount_nanos": uncovered,
            "generation_id": row.id + WRITEOFF_SUFFIX, "note": WRITEOFF_NOTE, "created_at": row.created_at}


class Ledger:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def balance(self, account_id: str) -> tuple[int, int]:
        """(balance in nano-dollars, highest ledger ID included) for one account."""
        query = sa.select(sa.func.coalesce(sa.func.sum(ledger.c.amount_nanos), 0),
                          sa.func.coalesce(sa.func.max(ledger.c.id), 0)).where(ledger.c.account_id == account_id)
        async with self.engine.connect() as conn:
            total, high = (await conn.execute(query)).one()
        return int(cast(int, total)), int(cast(int, high))  # coalesce() is typed `object`

    async def add_entry(self, account_id: str, kind: str, amount_nanos: int, note: str = "") -> LedgerEntry:
        """Append a top-up, refund or adjustment. A negative entry may not take the balance below zero."""
        if kind not in ENTRY_KINDS or kind in _WRITTEN_BY_THE_GATEWAY:
            raise InvalidRequest(f"entry kind must be one of topup, refund, adjustment, not {kind!r}")
        if kind == "topup" and amount_nanos <= 0:
            raise InvalidRequest("a top-up must be a positive amount")
        async with self.engine.begin() as conn:
            if amount_nanos < 0:
                total: int = (await conn.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(ledger.c.amount_nanos), 0))
                    .where(ledger.c.account_id == account_id))).scalar_one()
                if total + amount_nanos < 0:
                    raise InvalidRequest("that adjustment would take the balance below zero")
            row = (await conn.execute(ledger.insert().returning(*ledger.c).values(
                account_id=account_id, kind=kind, amount_nanos=amount_nanos, note=note, created_at=utcnow(),
            ))).one()
            await bump_epoch(conn)
        return _entry(row)

    async def entries(self, account_id: str) -> list[LedgerEntry]:
        query = sa.select(ledger).where(ledger.c.account_id == account_id).order_by(ledger.c.id)
        async with self.engine.connect() as conn:
            return [_entry(r) for r in (await conn.execute(query)).all()]

    async def close(self) -> None:
        """Nothing to release: the engine is its owner's to dispose (this makes a Ledger a settlement sink)."""

    async def record(self, batch: list[Settlement]) -> dict[str, int]:
        """Write generation rows and their charges in one transaction.

        Returns {generation ID: ledger entry ID} for the charges written. Safe to retry:
        rows already present (a commit whose acknowledgement was lost) are skipped.
        """
        try:
            async with self.engine.begin() as conn:
                return await self.insert_settlements(conn, batch)
        except IntegrityError:
            written: dict[str, int] = {}
            for item in batch:  # one at a time, skipping what is already there
                async with self.engine.begin() as conn:
                    exists = (await conn.execute(sa.select(generations.c.id)
                                                 .where(generations.c.id == item.generation.id))).first()
                    if exists is None:
                        written.update(await self.insert_settlements(conn, [item]))
            return written

    @staticmethod
    async def insert_settlements(conn: AsyncConnection, batch: list[Settlement]) -> dict[str, int]:
        """Insert generation rows and their charges (and write-offs) in the caller's transaction:
        {generation ID: ledger entry ID}. `IntegrityError` if a generation is already recorded."""
        await conn.execute(generations.insert(), [generation_row(s) for s in batch])
        charges = [s for s in batch if billed_nanos(s) > 0]
        if not charges:
            return {}
        # Rows are matched by the generation ID they return, so their order does not matter; asking
        # for it makes SQLAlchemy send one INSERT per row on SQLite (2 more driver round trips each).
        rows = (await conn.execute(ledger.insert().returning(ledger.c.generation_id, ledger.c.id),
                                   [charge_row(s) for s in charges])).all()
        writeoffs = [row for row in map(writeoff_row, charges) if row is not None]
        if writeoffs:
            await conn.execute(ledger.insert(), writeoffs)
        return {r.generation_id: r.id for r in rows}

    async def generation(self, generation_id: str, account_id: str | None = None) -> Generation:
        query = sa.select(generations).where(generations.c.id == generation_id)
        if account_id is not None:
            query = query.where(generations.c.account_id == account_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"no generation {generation_id!r}", param="id")
        return _generation(row)

    async def generations(self, account_id: str | None = None, limit: int = 100) -> list[Generation]:
        query = sa.select(generations).order_by(generations.c.created_at.desc()).limit(limit)
        if account_id is not None:
            query = query.where(generations.c.account_id == account_id)
        async with self.engine.connect() as conn:
            return [_generation(r) for r in (await conn.execute(query)).all()]
