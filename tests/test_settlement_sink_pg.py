"""The lean PostgreSQL settlement sink keeps `Ledger.record`'s contract on a real server: the same
rows and ledger IDs, a retried batch skips what was written, a failed batch leaves nothing, and a
connection that died is replaced by the next (retried) batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from runapi.storage import AccountStore, Ledger, create_engine, upgrade
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

