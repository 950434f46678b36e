"""The durable task queue and task outputs, in the relational database (SQLite or PostgreSQL).

Claiming is one `UPDATE … WHERE id = (SELECT … LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING *`:
on PostgreSQL concurrent workers skip each other's rows; on SQLite (where `FOR UPDATE` renders
as nothing) the statement runs under the database's single write lock, so it is atomic too.
A claim is a lease (`locked_until`), renewed while the task runs; a task whose lease lapsed
(its worker was killed) is claimable again and re-run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from runapi.clock import as_utc, utcnow
from runapi.errors import NotFound
from runapi.storage import (
    WRITEOFF_SUFFIX,
    Ledger,
    Settlement,
    generations,
    idempotency_keys,
    ledger,
    task_outputs,
    tasks,
    webhook_events,
)
from runapi.tasks.records import Task, TaskOutput
from runapi.tasks.video_store import release_hold

EventFactory = Callable[[Task, TaskOutput | None], dict[str, Any] | None]
"""Builds the webhook outbox row for a task that just reached a final state (or None: no callback)."""

_CLAIMABLE = ("queued", "running")


def run_generation_id(task_id: str, attempt: int) -> str:
    """The generation ID of a task's `attempt`-th generation: `gen-<task hex>-<attempt>`."""
    return f"gen-{task_id.removeprefix('task_')}-{attempt}"


async def first_open_generation(engine: AsyncEngine, candidates: Sequence[str]) -> tuple[str, bool] | None:
    """(the first of `candidates` not recorded as a failed generation, whether it is recorded), or None.

    Retries of one piece of work (a task's runs, an idempotent request's attempts) take generation
    IDs in order and move past one only once it is recorded as failed: attempts that overlap, or
    an attempt after a charged one whose answer was lost, share an ID, which the ledger's unique
    `generation_id` charges once.
    """
    query = sa.select(generations.c.id, generations.c.status).where(generations.c.id.in_(candidates))
    async with engine.connect() as conn:
        recorded = {row.id: row.status for row in (await conn.execute(query)).all()}
    for generation_id in candidates:
        status = recorded.get(generation_id)
        if status != "failed":
            return generation_id, status is not None
    return None


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(sa.and_(tasks.c.status == "queued", tasks.c.run_after <= now),
                  sa.and_(tasks.c.status == "running", tasks.c.locked_until < now))


class TaskStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, values: dict[str, Any], idempotency_row: dict[str, Any] | None = None) -> Task:
        """Insert a queued task (and its idempotency key, in the same transaction).

        Raises `sqlalchemy.exc.IntegrityError` if the idempotency key is already taken.
        """
        async with self.engine.begin() as conn:
            if idempotency_row is not None:
                await conn.execute(idempotency_keys.delete().where(
                    idempotency_keys.c.account_id == idempotency_row["account_id"],
                    idempotency_keys.c.key == idempotency_row["key"],
                    idempotency_keys.c.expires_at < utcnow()))
                await conn.execute(idempotency_keys.insert().values(**idempotency_row))
            row = (await conn.execute(tasks.insert().values(**values).returning(*tasks.c))).one()
        return Task.from_row(row)

    async def get(self, task_id: str, account_id: str | None = None) -> Task:
        """A task; `NotFound` if it does not exist or (given `account_id`) belongs to another account."""
        query = sa.select(tasks).where(tasks.c.id == task_id)
        if account_id is not None:
            query = query.where(tasks.c.account_id == account_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"No task {task_id!r}.", param="id", code="task_not_found")
        return Task.from_row(row)

    async def list(self, account_id: str | None = None, *, status: str | None = None, limit: int = 20,
                   after: str | None = None, endpoint: str | None = None) -> list[Task]:
        """Newest first; `after` is the last task ID of the previous page."""
        query = sa.select(tasks).order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(limit)
        if endpoint is not None:
            query = query.where(tasks.c.endpoint == endpoint)
        if account_id is not None:
            query = query.where(tasks.c.account_id == account_id)
        if status is not None:
            query = query.where(tasks.c.status == status)
        async with self.engine.connect() as conn:
            if after is not None:
                cursor = (await conn.execute(sa.select(tasks.c.created_at).where(tasks.c.id == after))).first()
                if cursor is None:
                    raise NotFound(f"No task {after!r} to page after.", param="after")
                query = query.where(sa.or_(tasks.c.created_at < cursor.created_at,
                                           sa.and_(tasks.c.created_at == cursor.created_at, tasks.c.id < after)))
            return [Task.from_row(r) for r in (await conn.execute(query)).all()]

    async def claim(self, worker: str, lease: float) -> Task | None:
        """Take the next runnable task (queued and due, or running with a lapsed lease), or None."""
        now = utcnow()
        async with self.engine.connect() as conn:  # a cheap read first: idle polls take no write lock
            if (await conn.execute(sa.select(tasks.c.id).where(_claimable(now)).limit(1))).first() is None:
                return None
        pick = (sa.select(tasks.c.id).where(_claimable(now)).order_by(tasks.c.run_after).limit(1)
                .with_for_update(skip_locked=True).scalar_subquery())
        claim = (tasks.update().where(tasks.c.id == pick, _claimable(now))
                 .values(status="running", worker=worker, locked_until=now + timedelta(seconds=lease),
                         runs=tasks.c.runs + 1, started_at=sa.func.coalesce(tasks.c.started_at, now))
                 .returning(*tasks.c))
        async with self.engine.begin() as conn:
            row = (await conn.execute(claim)).first()
        return None if row is None else Task.from_row(row)

    async def next_due(self) -> datetime | None:
        """When the next task becomes claimable by time alone (a queued task's `run_after`, a running
        task's lapsing lease), or None if none will."""
        async with self.engine.connect() as conn:
            queued = (await conn.execute(sa.select(sa.func.min(tasks.c.run_after))
                                         .where(tasks.c.status == "queued"))).scalar()
            leased = (await conn.execute(sa.select(sa.func.min(tasks.c.locked_until))
                                         .where(tasks.c.status == "running"))).scalar()
        times = [as_utc(t) for t in (queued, leased) if t is not None]
        return min(times) if times else None  # type: ignore[type-var]

    async def generation_for_run(self, task: Task) -> tuple[str, bool]:
        """(generation ID for this run, whether it was already charged): the first `gen-<task>-<k>`
        not recorded as failed (see `first_open_generation`)."""
        found = await first_open_generation(self.engine, [run_generation_id(task.id, k)
                                                          for k in range(1, task.runs + 2)])
        assert found is not None, "each run records at most one generation"
        return found

    async def set_generation(self, task_id: str, worker: str, generation_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(tasks.update().where(tasks.c.id == task_id, tasks.c.worker == worker)
                               .values(generation_id=generation_id))

    async def renew(self, task_id: str, worker: str, lease: float) -> tuple[bool, bool]:
        """Extend a running task's lease: (still ours, cancel requested)."""
        async with self.engine.begin() as conn:
            row = (await conn.execute(
                tasks.update().where(tasks.c.id == task_id, tasks.c.worker == worker, tasks.c.status == "running")
                .values(locked_until=utcnow() + timedelta(seconds=lease)).returning(tasks.c.cancel_requested))).first()
        return (False, False) if row is None else (True, bool(row.cancel_requested))

    async def requeue(self, task_id: str, worker: str, run_after: datetime, *, count_run: bool) -> None:
        """Give a claimed task back to the queue (rate-limited, or this process is stopping)."""
        values: dict[str, Any] = {"status": "queued", "worker": None, "locked_until": None, "run_after": run_after}
        if not count_run:
            values["runs"] = tasks.c.runs - 1
        async with self.engine.begin() as conn:
            await conn.execute(tasks.update().where(tasks.c.id == task_id, tasks.c.worker == worker,
                                                    tasks.c.status == "running").values(**values))

    async def finish(self, task: Task, worker: str, status: str, *, cost_nanos: int | None = None,
                     error: dict[str, Any] | None = None, output: TaskOutput | None = None,
                     event_for: EventFactory | None = None, settlement: Settlement | None = None) -> Task | None:
        """Record a run's final state, its output and its webhook event in one transaction; for a video
        task also the release of its credit hold and (`settlement`) its generation row and charge.

        Returns the finished task, or None if this worker no longer holds the task (its lease was
        taken over), in which case nothing is written.
        """
        now = utcnow()
        async with self.engine.begin() as conn:
            row = (await conn.execute(
                tasks.update().where(tasks.c.id == task.id, tasks.c.worker == worker, tasks.c.status == "running")
                .values(status=status, finished_at=now, locked_until=None, cost_nanos=cost_nanos,
                        error=None if error is None else msgspec.json.encode(error).decode())
                .returning(*tasks.c))).first()
            if row is None:
                return None
            finished = Task.from_row(row)
            if finished.is_video:
                await release_hold(conn, finished)
            if settlement is not None:
                await Ledger.insert_settlements(conn, [settlement])
            if output is not None:
                await conn.execute(task_outputs.insert().values(
                    task_id=task.id, account_id=task.account_id, body=output.body, content_type=output.content_type,
                    created_at=now, expires_at=output.expires_at))
            return await self._emit(conn, finished, output, event_for)

    async def cancel(self, task_id: str, account_id: str, event_for: EventFactory | None = None) -> Task:
        """Cancel a queued task at once; flag a running one (its worker stops it). Returns the task."""
        now = utcnow()
        async with self.engine.begin() as conn:
            row = (await conn.execute(
                tasks.update().where(tasks.c.id == task_id, tasks.c.account_id == account_id,
                                     tasks.c.status == "queued")
                .values(status="cancelled", finished_at=now, error=None).returning(*tasks.c))).first()
            if row is not None:
                cancelled = Task.from_row(row)
                if cancelled.is_video:
                    await release_hold(conn, cancelled)
                return await self._emit(conn, cancelled, None, event_for)
            await conn.execute(tasks.update().where(tasks.c.id == task_id, tasks.c.account_id == account_id,
                                                    tasks.c.status == "running").values(cancel_requested=True))
        return await self.get(task_id, account_id)

    @staticmethod
    async def _emit(conn: AsyncConnection, task: Task, output: TaskOutput | None,
                    event_for: EventFactory | None) -> Task:
        event = event_for(task, output) if event_for is not None else None
        if event is not None:
            await conn.execute(webhook_events.insert().values(**event))
        return task

    async def charge_of(self, generation_id: str) -> int:
        """The nano-dollars charged for one generation (0 if none): its charge, less any write-off."""
        query = sa.select(sa.func.coalesce(sa.func.sum(-ledger.c.amount_nanos), 0)).where(
            ledger.c.generation_id.in_([generation_id, generation_id + WRITEOFF_SUFFIX]),
            ledger.c.kind.in_(("charge", "writeoff")))
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def has_ledger_note(self, account_id: str, note: str) -> bool:
        query = sa.select(ledger.c.id).where(ledger.c.account_id == account_id, ledger.c.note == note).limit(1)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def output(self, task_id: str) -> TaskOutput | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(task_outputs).where(task_outputs.c.task_id == task_id))).first()
        if row is None:
            return None
        return TaskOutput(task_id=row.task_id, body=bytes(row.body), content_type=row.content_type,
                          expires_at=as_utc(row.expires_at))  # type: ignore[arg-type]

    async def delete_output(self, task_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(task_outputs.delete().where(task_outputs.c.task_id == task_id))

    async def output_expiries(self, task_ids: Sequence[str]) -> dict[str, datetime]:
        """{task ID: output expiry} for those of `task_ids` whose output is still kept."""
        if not task_ids:
            return {}
        query = sa.select(task_outputs.c.task_id, task_outputs.c.expires_at).where(task_outputs.c.task_id.in_(task_ids))
        async with self.engine.connect() as conn:
            return {r.task_id: as_utc(r.expires_at) for r in (await conn.execute(query)).all()}  # type: ignore[misc]

    async def purge(self) -> tuple[int, int]:
        """Delete expired outputs and idempotency keys: (outputs, keys) deleted."""
        now = utcnow()
        async with self.engine.begin() as conn:
            outputs = (await conn.execute(task_outputs.delete().where(task_outputs.c.expires_at < now))).rowcount
            keys = (await conn.execute(idempotency_keys.delete().where(idempotency_keys.c.expires_at < now))).rowcount
        return outputs, keys
