"""The lean PostgreSQL settlement sink keeps `Ledger.record`'s contract on a real server: the same
rows and ledger IDs, a retried batch skips what was written, a failed batch leaves nothing, and a
connection that died is replaced by the next (retried) batch."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import msgspec
import pytest
import sqlalchemy as sa

from runapi.storage import AccountStore, Ledger, create_engine, upgrade
from runapi.storage.rollups import rollup_mismatches
from runapi.storage.schema import generations, ledger
from runapi.storage.settlement_sink_pg import PostgresSettlementSink, asyncpg_dsn
from tests.support.postgres import temporary_database
from tests.test_settlement_sink import batch, settlement


@pytest.fixture()
def database_url() -> Iterator[str]:
    with temporary_database() as url:
        upgrade(url)
        yield url


async def _funded(url: str) -> tuple[Any, str]:
    engine = create_engine(url)
    account = await AccountStore(engine).create_account("acme")
    await Ledger(engine).add_entry(account.id, "topup", 1_000_000_000)
    return engine, account.id


async def _rows(engine: Any, account_id: str) -> tuple[list[Any], list[Any]]:
    async with engine.connect() as conn:
        gens = (await conn.execute(sa.select(generations).order_by(generations.c.id))).all()
        charges = (await conn.execute(sa.select(ledger).where(ledger.c.kind == "charge").order_by(ledger.c.id))).all()
    named = [tuple("acct" if v == account_id else v for v in row) for row in gens]
    return named, [tuple("acct" if v == account_id else v for v in row) for row in charges]


@pytest.fixture()
def two_databases() -> Iterator[dict[str, str]]:
    with temporary_database() as one, temporary_database() as two:
        upgrade(one)
        upgrade(two)
        yield {"ledger": one, "lean": two}


async def test_same_rows_and_ids_as_the_ledger_sink(two_databases: dict[str, str]) -> None:
    results = {}
    for kind, url in two_databases.items():
        engine, account = await _funded(url)
        sink = Ledger(engine) if kind == "ledger" else PostgresSettlementSink(url)
        try:
            first = await sink.record(batch(account, "gen-a"))
            second = await sink.record(batch(account, "gen-b")[:1])
            results[kind] = (first, second, await _rows(engine, account), await Ledger(engine).balance(account))
        finally:
            await sink.close()
            await engine.dispose()
    assert results["lean"] == results["ledger"]
    first, second, (gens, charges), balance = results["lean"]
    assert set(first) == {"gen-a-paid", "gen-a-named"} and set(second) == {"gen-b-paid"}
    assert len(gens) == 5 and len(charges) == 3
    assert balance[0] == 1_000_000_000 - 7100 - 42 - 7100


def _awkward(account_id: str, prefix: str) -> list[Any]:
    """A batch whose values a text encoding could bend: write-offs (a charge the balance did not cover),
    integers past a double's 53 bits, microseconds in another zone, quotes, backslashes and non-ASCII."""
    india = timezone(timedelta(hours=5, minutes=30))
    return [
        settlement(account_id, f"{prefix}-short", 100, cost_nanos=7100),  # 7000 written off
        settlement(account_id, f"{prefix}-paid", 250),
        settlement(account_id, f"{prefix}-big", 2**53 + 1, units=2**53 + 3, input_tokens=2**31 - 1, unit="second",
                   latency_ms=0.1 + 0.2, ttft_ms=1e-7, overhead_ms=123456789.98765432,
                   created_at=datetime(2026, 12, 7, 23, 59, 59, 999999, tzinfo=india)),
        settlement(account_id, f"{prefix}-odd", 3, cost_nanos=9, error='bad "quote" \\ back\nslash\u00e9 – 日本',
                   client_request_id="req-\t1", created_at=datetime(2026, 12, 7, 0, 0, 0, 1, tzinfo=UTC)),
    ]


async def test_write_offs_and_awkward_values_as_the_ledger_sink_writes_them(two_databases: dict[str, str]) -> None:
    results = {}
    for kind, url in two_databases.items():
        engine, account = await _funded(url)
        sink = Ledger(engine) if kind == "ledger" else PostgresSettlementSink(url)
        try:
            first = await sink.record(_awkward(account, "gen-w"))
            async with engine.connect() as conn:
                entries = (await conn.execute(sa.select(ledger.c.id, ledger.c.kind, ledger.c.amount_nanos,
                                                        ledger.c.generation_id, ledger.c.note, ledger.c.created_at)
                                              .order_by(ledger.c.id))).all()
            stored = [await Ledger(engine).generation(s.generation.id) for s in _awkward(account, "gen-w")]
            assert await rollup_mismatches(engine) == []  # the roll-up triggers saw every row
            results[kind] = (first, entries[1:], [msgspec.structs.replace(g, account_id="acct") for g in stored],
                             await Ledger(engine).balance(account))
        finally:
            await sink.close()
            await engine.dispose()
    assert results["lean"] == results["ledger"]
    first, entries, stored, balance = results["lean"]
    assert [(e.kind, e.amount_nanos) for e in entries] == [
        ("charge", -7100), ("charge", -250), ("charge", -(2**53 + 1)), ("charge", -9),  # in batch order, then
        ("writeoff", 7000), ("writeoff", 6)]  # the write-offs
    assert list(first) == ["gen-w-short", "gen-w-paid", "gen-w-big", "gen-w-odd"]
    sent = [msgspec.structs.replace(s.generation, account_id="acct") for s in _awkward("acct", "gen-w")]
    assert stored == sent  # every value exact: integers, floats, instants to the microsecond, text
    assert balance[0] == 1_000_000_000 - 7100 - 250 - (2**53 + 1) - 9 + 7000 + 6


async def test_a_retried_batch_writes_no_second_write_off(database_url: str) -> None:
    engine, account = await _funded(database_url)
    sink = PostgresSettlementSink(database_url)
    try:
        first = await sink.record(_awkward(account, "gen-x")[:1])
        again = await sink.record(_awkward(account, "gen-x"))  # the first acknowledgement was lost
        assert set(again) == {"gen-x-paid", "gen-x-big", "gen-x-odd"}
        async with engine.connect() as conn:
            kinds = (await conn.execute(sa.select(ledger.c.kind, sa.func.count()).where(ledger.c.kind != "topup")
                                        .group_by(ledger.c.kind).order_by(ledger.c.kind))).all()
        assert set(first) == {"gen-x-short"} and [tuple(k) for k in kinds] == [("charge", 4), ("writeoff", 2)]
        assert await rollup_mismatches(engine) == []
    finally:
        await sink.close()
        await engine.dispose()


async def test_non_finite_floats_and_zoneless_times_are_stored_as_asyncpg_stored_them(database_url: str) -> None:
    engine, account = await _funded(database_url)
    sink = PostgresSettlementSink(database_url)
    naive = datetime(2026, 12, 7, 12, 30, 0, 654321)  # no zone: UTC, as everywhere in RunAPI (`clock.as_utc`)
    try:
        await sink.record([settlement(account, "gen-nan", 5, latency_ms=math.nan, ttft_ms=math.inf,
                                      overhead_ms=-math.inf, created_at=naive)])
        stored = await Ledger(engine).generation("gen-nan")
        assert math.isnan(stored.latency_ms) and stored.ttft_ms == math.inf and stored.overhead_ms == -math.inf
        assert stored.created_at == naive.replace(tzinfo=UTC)
    finally:
        await sink.close()
        await engine.dispose()


async def test_a_retried_batch_skips_what_is_already_written(database_url: str) -> None:
    engine, account = await _funded(database_url)
    sink = PostgresSettlementSink(database_url)
    try:
        first = await sink.record(batch(account, "gen-r"))
        assert await sink.record(batch(account, "gen-r")) == {}  # the first acknowledgement was lost
        mixed = await sink.record(batch(account, "gen-r") + [settlement(account, "gen-r-new", 9)])
        assert set(first) == {"gen-r-paid", "gen-r-named"} and set(mixed) == {"gen-r-new"}
        assert (await Ledger(engine).balance(account))[0] == 1_000_000_000 - 7100 - 42 - 9
    finally:
        await sink.close()
        await engine.dispose()


async def test_a_failed_batch_leaves_nothing_and_a_dead_connection_is_replaced(database_url: str) -> None:
    engine, account = await _funded(database_url)
    sink = PostgresSettlementSink(database_url)
    try:
        with pytest.raises(asyncpg.exceptions.ForeignKeyViolationError):  # no such account
            await sink.record([settlement("acc_nobody", "gen-orphan", 5), settlement(account, "gen-ok", 5)])
        gens, charges = await _rows(engine, account)
        assert gens == [] and charges == []  # one statement: all or nothing
        assert set(await sink.record([settlement(account, "gen-1", 5)])) == {"gen-1"}
        admin = await asyncpg.connect(asyncpg_dsn(database_url))
        try:  # the server drops the sink's connection, as a restart or a network cut would
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        finally:
            await admin.close()
        dropped = sink._conn
        try:  # fails if the sink has not noticed the drop yet, else reconnects at once
            written = await sink.record([settlement(account, "gen-2", 5)])
        except Exception:  # noqa: BLE001 - whatever asyncpg makes of it; the writer retries any failure
            written = await sink.record([settlement(account, "gen-2", 5)])
        assert set(written) == {"gen-2"} and sink._conn is not dropped
        assert (await Ledger(engine).balance(account))[0] == 1_000_000_000 - 10
    finally:
        await sink.close()
        await engine.dispose()

