"""Group commit of settlements: many calls' generation rows and charges in one transaction.

A caller awaits `submit()`, which returns once its row and charge are durable: appended to
the crash-safe journal (`accounting/journal.py`) when there is one, else committed. The
writer loop batches whatever is queued meanwhile, so concurrent calls share a commit.
A batch that fails to write is retried with backoff until it succeeds: a charge is
never dropped. Each settlement comes with what it closes (`Closing`: the call's reservation),
told when the settlement is journaled and when it is committed; holds are closed only after
the write committed. Before the write, a charge capped below its generation's cost (the call
cost more than its hold) is raised as far as the account's free balance allows
(`Closing.cover_overrun`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from runapi.accounting.journal import Segment, SettlementJournal
from runapi.storage import Settlement, SettlementSink

log = logging.getLogger("runapi.settlement")


class Closing(Protocol):
    """What a settlement closes (a call's holds: `pipeline.Reservation`)."""

    async def cover_overrun(self, settlement: Settlement) -> None:
        """Raise a charge capped below its generation's cost, before it is written; never raises."""

    def journaled(self, settlement: Settlement) -> None:
        """The settlement is durable (journaled), not yet committed."""

    def committed(self, settlement: Settlement) -> None:
        """The settlement is committed; `settlement.ledger_id` is its charge's entry (None: no charge)."""


class _Item:
    """A settlement to write: what it closes, and either its journal segment or the future its caller awaits."""

    __slots__ = ("settlement", "closing", "done", "segment")

    def __init__(self, settlement: Settlement, closing: Closing | None, done: asyncio.Future[None] | None,
                 segment: Segment | None = None) -> None:
        self.settlement = settlement
        self.closing = closing
        self.done = done
        self.segment = segment


class SettlementWriter:
    def __init__(self, sink: SettlementSink, *, max_batch: int = 500, journal: SettlementJournal | None = None,
                 observers: list[Callable[[Settlement], None]] | None = None, max_backlog: int = 1000,
                 linger: float = 0.005) -> None:
        """`observers` (metrics, health) see each settlement as soon as it is durable: right after the
        task step that journaled it, or else once committed.
        `linger`: how long a journaled settlement (already durable, nobody waiting) waits for others to
        share its commit; a waiter (a caller without journal, a `flush`) ends the wait at once."""
        self._sink = sink
        self.journal = journal
        self._observers = observers or []
        self._max_backlog = max_backlog
        self._max_batch = max_batch
        self._linger = linger if journal is not None else 0.0
        self._hurry: asyncio.Future[None] | None = None  # set while lingering; done when someone waits
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._submitted = 0  # settlements ever queued; they are written in that order
        self._written = 0
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []  # (settlements to be written, waiter)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="settlement-writer")

    async def submit(self, settlement: Settlement, closing: Closing | None) -> None:
        """Queue a settlement and wait until it is durable: journaled (committed later, `closing`
        closed then), or without a journal committed (`closing` is closed by then). While the writer
        is `max_backlog` settlements behind, callers wait for the commit: the backlog (memory, journal
        size, replay time) stays bounded and the load slows to what the database can write."""
        if self.journal is not None and self.pending < self._max_backlog:
            try:
                segment = self.journal.append(settlement)
            except OSError:  # the journal's disk refuses: wait for the commit instead
                log.exception("could not journal generation %s; waiting for its commit", settlement.generation.id)
            else:
                # The bookkeeping of a durable settlement waits for the end of this task step, so the
                # caller's answer is written first; scheduled before the item is queued, it runs before
                # the writer can commit the item (callbacks run in order).
                asyncio.get_running_loop().call_soon(self._journaled, settlement, closing)
                self._put(_Item(settlement, closing, None, segment))
                return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put(_Item(settlement, closing, done))
        # Shielded: a caller that is cancelled (client gone) still gets its charge written.
        await asyncio.shield(done)

    def _journaled(self, settlement: Settlement, closing: Closing | None) -> None:
        """A journaled call is over: its holds keep only its charge until the commit; observers see it."""
        if closing is not None:
            closing.journaled(settlement)
        self._notify(settlement)

    @property
    def pending(self) -> int:
        """Settlements submitted and not yet committed (queued or being written)."""
        return self._submitted - self._written

    def _put(self, item: _Item) -> None:
        self._submitted += 1
        self._queue.put_nowait(item)
        if item.done is not None:
            self._stop_lingering()

    def _stop_lingering(self) -> None:
        if self._hurry is not None and not self._hurry.done():
            self._hurry.set_result(None)

    async def flush(self) -> None:
        """Wait until every settlement submitted so far is committed (read-your-writes for reports)."""
        if self._task is None or self._written == self._submitted:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushes.append((self._submitted, done))
        self._stop_lingering()
        await asyncio.shield(done)

    async def close(self) -> None:
        """Write everything still queued, then stop."""
        if self._task is None:
            return
        self._stop_lingering()
        await self._queue.join()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._linger and batch[0].done is None and not self._flushes:
                await self._gather_more()
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)
            self._written += len(batch)
            if self._flushes:
                waiting = []
                for target, done in self._flushes:
                    if target > self._written:
                        waiting.append((target, done))
                    elif not done.done():
                        done.set_result(None)
                self._flushes = waiting
            for _ in batch:
                self._queue.task_done()

    async def _gather_more(self) -> None:
        """Wait up to `linger` for more settlements to share one commit, unless someone waits for it."""
        loop = asyncio.get_running_loop()
        hurry = self._hurry = loop.create_future()
        timer = loop.call_later(self._linger, self._stop_lingering)
        try:
            await hurry
        finally:
            timer.cancel()
            self._hurry = None

    def _notify(self, settlement: Settlement) -> None:
        for observe in self._observers:
            try:
                observe(settlement)
            except Exception:  # metrics must never block a settlement
                log.exception("settlement observer failed")

    async def _cover_overruns(self, batch: list[_Item]) -> None:
        """Raise charges capped below their cost (rare: only calls that cost more than their hold),
        concurrently. On any failure the capped charge stands: it is never dropped."""
        overruns = [(item.closing, item.settlement) for item in batch if item.closing is not None
                    and item.settlement.charge_nanos < item.settlement.generation.cost_nanos]
        if not overruns:
            return
        results = await asyncio.gather(*(closing.cover_overrun(settlement) for closing, settlement in overruns),
                                       return_exceptions=True)
        for (_, settlement), result in zip(overruns, results, strict=True):
            if isinstance(result, Exception):
                log.error("covering the overrun of generation %s failed; charging %d nano-dollars",
                          settlement.generation.id, settlement.charge_nanos, exc_info=result)

    async def _write(self, batch: list[_Item]) -> None:
        await self._cover_overruns(batch)
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
            if item.segment is not None:
                self.journal.committed(item.segment)  # type: ignore[union-attr]
            item.settlement.ledger_id = ledger_ids.get(item.settlement.generation.id)
            if item.closing is not None:
                item.closing.committed(item.settlement)
            if item.segment is None:  # durable only now
                self._notify(item.settlement)
            if item.done is not None and not item.done.done():
                item.done.set_result(None)
