"""The durable state of video tasks: the credit held for them in the ledger, and their upstream job.

The hold is durable: at submission one transaction inserts the task and a `hold` ledger entry of
minus the job's price (taken as a credit hold first, so the balance never goes below zero); the task's
final transaction (`TaskStore.finish` / `cancel`) inserts the matching `release` entry (plus the
price) and, on success, the generation row and its charge. Both entries carry a unique
`generation_id` (`hold-<task>`, `release-<task>`), so a retried transaction can't write either
twice, and a restart finds the hold where it was: in the ledger.

The upstream job: `upstream_state` is set to `submitting` (committed) before the provider is
called, and to `submitted` with the provider's job ID right after it answered. A task found
`submitting` by a later run crashed in that window: the provider may or may not have the job. Z.ai
offers no lookup by our `request_id`, and submitting again could make (and cost the operator) a
second video, so such a task is failed free (`submission_unknown`), never submitted twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from runapi.clock import utcnow
from runapi.storage import HOLD_PREFIX, RELEASE_PREFIX, TASK_ID_PREFIX, bump_epoch, idempotency_keys, ledger, tasks
from runapi.tasks.records import Task

__all__ = ["VideoJobStore", "hold_entry_id", "release_hold", "video_generation_id"]


def video_generation_id(task_id: str) -> str:
    """The generation (and charge) of a video task: one per task, whatever its runs."""
    return f"gen-{task_id.removeprefix('task_')}-v"


def hold_entry_id(task_id: str) -> str:
    return HOLD_PREFIX + task_id.removeprefix(TASK_ID_PREFIX)


def _release_entry_id(task_id: str) -> str:
    return RELEASE_PREFIX + task_id.removeprefix(TASK_ID_PREFIX)


async def release_hold(conn: AsyncConnection, task: Task) -> bool:
    """Give back a video task's hold in the caller's transaction (once: a second call does nothing).
    True if a release entry was written."""
    if not task.hold_nanos:
        return False
    entry_id = _release_entry_id(task.id)
    if (await conn.execute(sa.select(ledger.c.id).where(ledger.c.generation_id == entry_id))).first() is not None:
        return False
    await conn.execute(ledger.insert().values(
        account_id=task.account_id, kind="release", amount_nanos=task.hold_nanos, generation_id=entry_id,
        note=f"credit held for video task {task.id} released", created_at=utcnow()))
    await bump_epoch(conn)  # every instance reads the balance again
    return True


class VideoJobStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, values: dict[str, Any], hold_nanos: int,
                     idempotency_row: dict[str, Any] | None = None) -> tuple[Task, int]:
        """Insert a queued video task and its `hold` ledger entry (and its idempotency key) in one
        transaction: (task, the hold's ledger entry ID). `IntegrityError` if the key is taken."""
        now = utcnow()
        async with self.engine.begin() as conn:
            if idempotency_row is not None:
                await conn.execute(idempotency_keys.delete().where(
                    idempotency_keys.c.account_id == idempotency_row["account_id"],
                    idempotency_keys.c.key == idempotency_row["key"], idempotency_keys.c.expires_at < now))
                await conn.execute(idempotency_keys.insert().values(**idempotency_row))
            row = (await conn.execute(tasks.insert().values(**values, hold_nanos=hold_nanos)
                                      .returning(*tasks.c))).one()
            entry_id = (await conn.execute(ledger.insert().returning(ledger.c.id).values(
                account_id=values["account_id"], kind="hold", amount_nanos=-hold_nanos,
                generation_id=hold_entry_id(values["id"]), note=f"credit held for video task {values['id']}",
                created_at=now))).scalar_one()
            await bump_epoch(conn)
        return Task.from_row(row), int(entry_id)

    async def _update(self, task_id: str, worker: str, values: dict[str, Any],
                      *conditions: sa.ColumnElement[bool]) -> bool:
        """Update a task this worker still holds (running); whether it did."""
        async with self.engine.begin() as conn:
            result = await conn.execute(tasks.update().where(
                tasks.c.id == task_id, tasks.c.worker == worker, tasks.c.status == "running", *conditions)
                .values(**values))
        return bool(result.rowcount)

    async def mark_submitting(self, task_id: str, worker: str, provider_name: str, upstream_model: str) -> bool:
        """Record, before calling the provider, that the job is being submitted (and where)."""
        return await self._update(task_id, worker, {"upstream_state": "submitting", "provider_name": provider_name,
                                                    "upstream_model": upstream_model}, tasks.c.upstream_state.is_(None))

    async def mark_submitted(self, task_id: str, worker: str, upstream_id: str) -> bool:
        return await self._update(task_id, worker, {"upstream_state": "submitted", "upstream_id": upstream_id})

    async def unmark_submitting(self, task_id: str, worker: str) -> bool:
        """The provider refused the job outright (it has none): submit again later."""
        return await self._update(task_id, worker, {"upstream_state": None})

    async def schedule(self, task_id: str, worker: str, run_after: datetime) -> bool:
        """Hand the task back to the queue until its next step is due (a poll, a submission retry).
        Not a run: `runs` counts only interrupted steps; `polls` counts the waits (backoff)."""
        return await self._update(task_id, worker, {
            "status": "queued", "worker": None, "locked_until": None, "run_after": run_after,
            "runs": tasks.c.runs - 1, "polls": tasks.c.polls + 1})
