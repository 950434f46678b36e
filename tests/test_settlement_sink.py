"""One contract for the settlement sinks: `Ledger.record` and the lean SQLite writer store the same
rows, return the same ledger IDs and skip what a retried batch already wrote."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.accounting import SettlementWriter
from runapi.accounting.credit import MemoryCreditGuard
from runapi.limits import build_tiers, create_limit_control
from runapi.pipeline.auth import Principal
from runapi.pipeline.reservation import Reservation
from runapi.storage import (
    AccountStore,
    Generation,
    KeyLimits,
    Ledger,
    Settlement,
    SettlementSink,
    SqliteSettlementSink,
    create_engine,
    create_settlement_sink,
    upgrade,
)
from runapi.storage.schema import generations, ledger
from runapi.storage.settlement_sink_pg import PostgresSettlementSink
from tests.support.gateway import sqlite_url

SINKS = ["ledger", "sqlite"]
WHEN = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=timezone.utc)


class Store:
    """A migrated SQLite file with one funded account, and both ways to write settlements to it."""

    def __init__(self, engine: AsyncEngine, account_id: str, path: Path) -> None:
        self.engine = engine
        self.account_id = account_id
        self.path = path
        self.ledger = Ledger(engine)
        self.sqlite = SqliteSettlementSink(str(path))

    def sink(self, kind: str) -> SettlementSink:
        return self.ledger if kind == "ledger" else self.sqlite

    async def rows(self) -> tuple[list[Any], list[Any]]:
        async with self.engine.connect() as conn:
            gens = (await conn.execute(sa.select(generations).order_by(generations.c.id))).all()
            charges = (await conn.execute(sa.select(ledger).order_by(ledger.c.id))).all()
        return [self._named(r) for r in gens], [self._named(r) for r in charges]

    def _named(self, row: Any) -> tuple[Any, ...]:
        """The row, with the account's random ID replaced by a fixed name (to compare two databases)."""
        return tuple("acct" if value == self.account_id else value for value in row)


async def open_store(directory: Path) -> Store:
    directory.mkdir(parents=True, exist_ok=True)
    url = sqlite_url(directory)
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    account = await AccountStore(engine).create_account("acme")
    await Ledger(engine).add_entry(account.id, "topup", 1_000_000_000)
    return Store(engine, account.id, directory / "runapi.db")


@pytest.fixture()
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(tmp_path)
    yield opened
    await opened.sqlite.close()
    await opened.engine.dispose()


def settlement(account_id: str, gen_id: str, charge: int, **changes: Any) -> Settlement:
    row = Generation(id=gen_id, account_id=account_id, key_id="key_x", model="glm-4.5-air", provider="zai",
                     upstream_model="glm-4.5-air", status="succeeded", stream=True, input_tokens=5, output_tokens=12,
                     cache_read_tokens=1, cache_write_tokens=0, reasoning_tokens=3, price_input="0.10",
                     price_output="0.55", price_cache_read="0.02", price_cache_write="0", cost_nanos=charge,
                     estimated=False, latency_ms=12.345, ttft_ms=1.5, overhead_ms=0.25,
                     created_at=WHEN + timedelta(milliseconds=len(gen_id)))
    return Settlement(msgspec.structs.replace(row, **changes), charge)


def batch(account_id: str, prefix: str) -> list[Settlement]:
    return [
        settlement(account_id, f"{prefix}-paid", 7100),
        settlement(account_id, f"{prefix}-free", 0, stream=False, ttft_ms=None, overhead_ms=None),
        settlement(account_id, f"{prefix}-failed", 0, status="failed", error="upstream 502", estimated=True),
        settlement(account_id, f"{prefix}-named", 42, client_request_id="req-1"),
    ]


async def test_both_sinks_store_the_same_rows_and_return_the_same_ids(tmp_path: Path) -> None:
    results = {}
    for kind in SINKS:
        opened = await open_store(tmp_path / kind)
        try:
            first = await opened.sink(kind).record(batch(opened.account_id, "gen-a"))
            second = await opened.sink(kind).record(batch(opened.account_id, "gen-b")[:1])
            gens, charges = await opened.rows()
            charges = [row[:-1] for row in charges]  # the top-up's created_at is the clock's
            failed = await opened.ledger.generation("gen-a-failed")
            results[kind] = (first, second, (gens, charges), msgspec.structs.replace(failed, account_id="acct"),
                             await opened.ledger.balance(opened.account_id))
        finally:
            await opened.sqlite.close()
            await opened.engine.dispose()
    assert results["ledger"] == results["sqlite"]
    first, second, (gens, charges), failed, balance = results["sqlite"]
    assert set(first) == {"gen-a-paid", "gen-a-named"} and set(second) == {"gen-b-paid"}
    assert len(gens) == 5 and len(charges) == 4  # the top-up and three charges
    assert balance == (1_000_000_000 - 7100 - 42 - 7100, max(*first.values(), *second.values()))
    assert failed.status == "failed" and failed.estimated and failed.error == "upstream 502"
    assert failed.created_at == WHEN + timedelta(milliseconds=len("gen-a-failed"))


async def test_both_sinks_store_byte_identical_values(store: Store) -> None:
    """Same generation written by each sink into one database: only the ID may differ."""
    await store.ledger.record([settlement(store.account_id, "gen-x-ledger", 5)])
    one = settlement(store.account_id, "gen-x-sqlite", 5)
    two = settlement(store.account_id, "gen-x-ledger", 5)
    await store.sqlite.record([Settlement(msgspec.structs.replace(one.generation, created_at=two.generation.created_at),
                                          5)])
    async with store.engine.connect() as conn:
        raw = (await conn.execute(sa.text("SELECT * FROM generations ORDER BY id"))).all()
        typed = (await conn.execute(sa.text("SELECT typeof(created_at), typeof(stream), typeof(latency_ms) "
                                            "FROM generations"))).all()
    assert raw[0][1:] == raw[1][1:]
    assert typed[0] == typed[1]


@pytest.mark.parametrize("kind", SINKS)
async def test_a_retried_batch_skips_what_is_already_written(store: Store, kind: str) -> None:
    sink = store.sink(kind)
    first = await sink.record(batch(store.account_id, "gen-r"))
    again = await sink.record(batch(store.account_id, "gen-r"))  # the first commit's acknowledgement was lost
    assert set(first) == {"gen-r-paid", "gen-r-named"} and again == {}
    mixed = await sink.record(batch(store.account_id, "gen-r") + [settlement(store.account_id, "gen-r-new", 9)])
    assert set(mixed) == {"gen-r-new"}
    gens, charges = await store.rows()
    assert len(gens) == 5 and len(charges) == 1 + 3
    assert (await store.ledger.balance(store.account_id))[0] == 1_000_000_000 - 7100 - 42 - 9


@pytest.mark.parametrize("kind", SINKS)
async def test_a_batch_that_cannot_be_written_leaves_nothing_behind(store: Store, kind: str) -> None:
    sink = store.sink(kind)
    with pytest.raises(Exception):
        await sink.record([settlement("acc_nobody", "gen-orphan", 5)])  # no such account: a foreign key fails
    gens, charges = await store.rows()
    assert gens == [] and len(charges) == 1
    assert set(await sink.record([settlement(store.account_id, "gen-after", 5)])) == {"gen-after"}


async def test_concurrent_batches_from_both_writers_get_distinct_correct_ids(store: Store) -> None:
    async def write(sink: SettlementSink, prefix: str) -> dict[str, int]:
        written: dict[str, int] = {}
        for n in range(10):
            written.update(await sink.record([settlement(store.account_id, f"{prefix}-{n}-{i}", 1 + i)
                                              for i in range(3)]))
        return written

    results = await asyncio.gather(write(store.sqlite, "gen-s1"), write(store.sqlite, "gen-s2"),
                                   write(store.ledger, "gen-l1"), write(store.ledger, "gen-l2"))
    returned = {gen_id: ledger_id for result in results for gen_id, ledger_id in result.items()}
    _, charges = await store.rows()
    stored = {row[4]: row[0] for row in charges if row[4]}
    assert returned == stored and len(stored) == 4 * 10 * 3


async def test_the_writer_closes_reservations_with_the_ids_the_sqlite_sink_returns(store: Store) -> None:
    guard = MemoryCreditGuard(store.ledger)
    limits = create_limit_control(build_tiers({}), store.engine)
    caller = Principal("key_w", store.account_id, "tier-5",  # 40 calls at once fill both limits exactly
                       KeyLimits(concurrent_requests=40, spend_cap_nanos=40 * 100))
    writer = SettlementWriter(store.sqlite)
    writer.start()
    items = [settlement(store.account_id, f"gen-w-{n}", 10 + n) for n in range(40)]
    reservations = [await Reservation.open(guard, limits, caller, "glm-4.5-air", prompt_tokens=10, output_tokens=10,
                                           max_cost_nanos=100) for _ in items]
    await asyncio.gather(*(writer.submit(item, held) for item, held in zip(items, reservations)))
    await writer.close()
    _, charges = await store.rows()
    stored = {row[4]: row[0] for row in charges if row[4]}
    assert {item.generation.id: item.ledger_id for item in items} == stored
    assert await guard.available(store.account_id) == 1_000_000_000 - sum(10 + n for n in range(40))
    # Every reservation is closed: no concurrency slot and no spend cap is held any more.
    again = await Reservation.open(guard, limits, caller, "glm-4.5-air", prompt_tokens=10, output_tokens=10,
                                   max_cost_nanos=40 * 100)
    again.release()


def test_the_factory_picks_the_lean_sink_of_each_database(tmp_path: Path) -> None:
    fake = Ledger(None)  # type: ignore[arg-type]  # never used: the factory only passes it through
    assert isinstance(create_settlement_sink(sqlite_url(tmp_path), fake), SqliteSettlementSink)
    for url in ("sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"):
        assert create_settlement_sink(url, fake) is fake
    assert isinstance(create_settlement_sink("postgresql+asyncpg://runapi@localhost/runapi", fake),
                      PostgresSettlementSink)


async def test_a_batch_waits_off_the_loop_while_another_connection_holds_the_write_lock(store: Store) -> None:
    """The loop's connection never waits for the lock: the batch goes to the sink's thread, the loop runs on."""
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer (a CLI top-up, another worker) holds the lock
    try:
        writing = asyncio.ensure_future(store.sqlite.record([settlement(store.account_id, "gen-wait", 5)]))
        ticks = 0
        for _ in range(20):  # the loop keeps turning while the batch waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not writing.done() and ticks == 20
    finally:
        other.execute("COMMIT")
        other.close()
    assert set(await writing) == {"gen-wait"}
    gens, charges = await store.rows()
    assert [row[0] for row in gens] == ["gen-wait"] and len(charges) == 2


async def test_the_wal_is_checkpointed_in_the_background_and_stays_bounded(tmp_path: Path) -> None:
    opened = await open_store(tmp_path)
    sink = SqliteSettlementSink(str(opened.path), checkpoint_rows=100)
    wal = Path(f"{opened.path}-wal")
    try:
        sizes = []
        for n in range(200):
            await sink.record([settlement(opened.account_id, f"gen-{n:04d}-{i}", 3) for i in range(10)])
            await asyncio.sleep(0)  # let a finished checkpoint report back
            sizes.append(wal.stat().st_size)
        # 2,000 rows dirty about 2,800 pages (11 MB of WAL) without checkpoints; with them the file is reused.
        assert max(sizes) < 2 * 1024 * 1024, max(sizes)
        gens, _ = await opened.rows()
        assert len(gens) == 2000
    finally:
        await sink.close()
        await opened.sqlite.close()
        await opened.engine.dispose()


async def test_a_big_batch_commits_in_runs_on_the_loop_which_serves_others_between_them(tmp_path: Path) -> None:
    """A backlog of 300 rows is 5 transactions of at most 64 on the loop's connection, not one in the thread
    (where `sqlite3` waits for the GIL once per row while the loop is busy); the loop turns between runs,
    and another connection sees each run committed in turn."""
    opened = await open_store(tmp_path)
    sink = SqliteSettlementSink(str(opened.path), inline_rows=64)
    reader = sqlite3.connect(opened.path)
    seen: list[int] = []
    running = True

    async def watch() -> None:
        while running:
            seen.append(reader.execute("SELECT count(*) FROM generations").fetchone()[0])
            await asyncio.sleep(0)

    watcher = asyncio.ensure_future(watch())
    try:
        batch = [settlement(opened.account_id, f"gen-run-{n:03d}", 1 + n % 7) for n in range(300)]
        written = await sink.record(batch)
        running = False
        await watcher
        assert {64, 128, 192, 256} <= set(seen) and max(seen) < 300  # each run committed, the loop turning
        _, charges = await opened.rows()
        assert written == {row[4]: row[0] for row in charges if row[4]}
        assert len(written) == 300 and -sum(row[3] for row in charges if row[4]) == sum(1 + n % 7 for n in range(300))
    finally:
        running = False
        reader.close()
        await sink.close()
        await opened.sqlite.close()
        await opened.engine.dispose()
