"""Quiet idle polls on SQLite: a poller queries only when the database changed or a time it knows comes.

The cache-epoch poller and the task and webhook claimers look at the database every half second.
Through SQLAlchemy and aiosqlite each look costs a query and a hop to aiosqlite's thread: an idle
gateway spent 36–50 ms of CPU a second on this project's VM, 14–18 without them (bench/RESULTS.md,
sixth session). On a SQLite file, `ChangeProbe` reads `PRAGMA data_version` on a connection of its
own, on the loop's thread, in microseconds: the number moves whenever any other connection (of this
process or another) commits. An `IdleGate` lets its poller query when the number moved since its
last query, when the next time something becomes due by itself has come (a queued task's
`run_after`, a lease lapsing, a webhook retry), or at the latest every `MAX_IDLE_S`. On other
databases, or when the probe cannot tell, every poll queries, as before.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from runapi.clock import as_utc

log = logging.getLogger("runapi.storage")

MAX_IDLE_S = 10.0  # a safety net: nothing should need it (`[server] idle_poll_max`)


class ChangeProbe:
    """`PRAGMA data_version` of one SQLite file (None: no file to watch). Opens its connection on first use."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def version(self) -> int | None:
        """A number that differs from the last one read whenever another connection committed; None
        when it cannot be told (not a SQLite file, or the read failed)."""
        if self.path is None:
            return None
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._conn.execute("PRAGMA busy_timeout=0")  # never wait on the loop's thread
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            log.debug("could not read the SQLite data version; polling anyway", exc_info=True)
            self.close()
            return None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class IdleGate:
    """When one poller must query. Call `begin()` before each possible query (it reads the version the
    query will have seen); after a query that found nothing to do, `idle(next_due)`; after one that
    found work or failed, `busy()`, so the next poll queries again."""

    def __init__(self, probe: ChangeProbe, clock: Callable[[], float] = time.time, max_idle: float = MAX_IDLE_S) -> None:
        self._probe = probe
        self._clock = clock
        self._max_idle = max_idle
        self._reading: int | None = None  # the version read by the last `begin()`
        self._seen: int | None = None  # the version the last idle query saw
        self._until = 0.0  # wall-clock seconds: query again by then even without a change

    @property
    def watching(self) -> bool:
        """Whether polls can be skipped at all (a SQLite file): only then is `next_due` worth a query."""
        return self._probe.path is not None

    def begin(self) -> bool:
        """Whether to query now: something changed since the last idle query, or its time came."""
        self._reading = version = self._probe.version()
        return version is None or version != self._seen or self._clock() >= self._until

    def idle(self, next_due: datetime | None = None) -> None:
        """The query found nothing to do; `next_due` is when something becomes due without any commit."""
        until = self._clock() + self._max_idle
        if next_due is not None:
            until = min(until, as_utc(next_due).timestamp())  # type: ignore[union-attr]
        self._seen, self._until = self._reading, until

    def busy(self) -> None:
        """The query found work, or failed: the next `begin()` says to query again."""
        self._seen = None


async def poll(gate: IdleGate, wake: asyncio.Event, interval: float, look: Callable[[], Awaitable[None]],
               failed: Callable[[], None]) -> None:
    """Run `look` every `interval` seconds when `gate` says so, and at once whenever `wake` is set (work
    made in this process). `look` tells the gate what it found; when it raises, `failed` is called (to
    log) and the next poll looks again. Runs until cancelled."""
    woken = True
    while True:
        if gate.begin() or woken:
            try:
                await look()
            except Exception:  # the database may be away: keep polling
                gate.busy()
                failed()
        wake.clear()
        try:
            await asyncio.wait_for(wake.wait(), interval)
            woken = True
        except TimeoutError:
            woken = False
