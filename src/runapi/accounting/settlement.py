"""Group commit of settlements: many calls' generation rows and charges in one transaction.

A caller awaits `submit()`, which returns once its row and charge are durable; the
writer loop batches whatever is queued meanwhile, so concurrent calls share a commit.
A batch that fails to write is retried with backoff until it succeeds: a charge is
never dropped. Holds are closed only after the write committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from runapi.accounting.credit import CreditGuard, Hold
from runapi.storage import Settlement, SettlementSink

log = logging.getLogger("runapi.settlement")


class _Item:
    __slots__ = ("settlement", "hold", "done")

    def __init__(self, settlement: Settlement, hold: Hold | None, done: asyncio.Future[None]) -> None:
        self.settlement = settlement
        self.hold = hold
        self.done = done


class SettlementWriter:
    def __init__(self, sink: SettlementSink, guard: CreditGuard,
                 observers: list[Callable[[Settlement], None]] | None = None, max_batch: int = 500) -> None:
        self._sink = sink
        self._observers = observers or []
        self._guard = guard
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="settlement-writer")

    async def submit(self, settlement: Settlement, hold: Hold | None) -> None:
        """Queue a settlement and wait until it is committed (the hold is closed by then)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(settlement, hold, done))
        # Shielded: a caller that is cancelled (client gone) still gets its charge written.
        await asyncio.shield(done)

    async def close(self) -> None:
        """Write everything still queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)
            for _ in batch:
                self._queue.task_done()

    async def _write(self, batch: list[_Item]) -> None:
        delay = 0.05
        while True:
            try:
                ledger_ids = await self._sink.record([item.settlement for item in batch])
                break
            except Exception:  # the database is away: keep the charges and try again
                log.exception("settlement write failed for %d generations; retrying in %.2fs", len(batch), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        for item in batch:
            ledger_id = item.settlement.ledger_id = ledger_ids.get(item.settlement.generation.id)
            if item.hold is not None:
                if ledger_id is None:
                    self._guard.release(item.hold)
                else:
                    self._guard.charged(item.hold, item.settlement.charge_nanos, ledger_id)
            for observe in self._observers:
                try:
                    observe(item.settlement)
                except Exception:  # metrics must never block a settlement
                    log.exception("settlement observer failed")
            if not item.done.done():
                item.done.set_result(None)
