"""A long history (issue 24): `runapi db seed` writes books that balance, keeps keys secret and refuses a
database with real traffic; the usage and report queries read the roll-ups' indexes (plans, on both
databases), and the roll-ups agree with the rows.
The timing is the bench's (bench/history.py), not a test's."""

from __future__ import annotations

import asyncio
import hashlib
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from runapi.cli.main import app as cli
from runapi.storage import (
    AccountStore,
    Ledger,
    RollupMismatch,
    UsageFilter,
    balances_by_account,
    create_engine,
    rollup_mismatches,
    upgrade,
    usage_by_deployment,
)
from runapi.storage.schema import account_balances, accounts, api_keys, generations, ledger
from runapi.storage.usage import account_usage_query, deployment_usage_query


def _seed(database_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["db", "seed", *args],
                                env={"RUNAPI_DATABASE_URL": database_url, "RUNAPI_CONFIG": "", "COLUMNS": "200"})
    return result.exit_code, result.output


async def _books(database_url: str) -> tuple[dict[str, int], dict[str, int], list[str], int]:
    """(Σ ledger per account, generations per account, key hashes, Σ charges + Σ billed costs)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            balances: dict[str, int] = dict((await conn.execute(sa.select(ledger.c.account_id, sa.func.sum(ledger.c.amount_nanos))
                                                .group_by(ledger.c.account_id))).all())
            counts: dict[str, int] = dict((await conn.execute(sa.select(generations.c.account_id, sa.func.count())
                                              .group_by(generations.c.account_id))).all())
            hashes: list[str] = list((await conn.execute(sa.select(api_keys.c.key_hash))).scalars())
            unmatched: int = (await conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(ledger.c.amount_nanos + generations.c.cost_nanos), 0))
                .select_from(ledger.join(generations, generations.c.id == ledger.c.generation_id)))).scalar_one()
    finally:
        await engine.dispose()
    return ({k: int(v) for k, v in balances.items()}, {k: int(v) for k, v in counts.items()}, hashes,
            int(unmatched))


def test_seed_writes_books_that_balance_and_keeps_keys_secret(database_url: str, tmp_path: Path) -> None:
    upgrade(database_url)
    keys_file = tmp_path / "keys.txt"
    code, output = _seed(database_url, "--accounts", "6", "--generations", "900", "--hot", "300",
                         "--credit", "25", "--keys-file", str(keys_file))
    assert code == 0, output
    assert "Reconciled" in output
    balances, counts, hashes, unmatched = asyncio.run(_books(database_url))
    assert len(balances) == 6 and set(balances.values()) == {25 * 10**9}  # Σ ledger = the credit, each
    assert sum(counts.values()) == 900 and max(counts.values()) >= 300
    assert unmatched == 0  # each charge is its generation's cost
    keys = keys_file.read_text().split()
    assert len(keys) == 6 and stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert sorted(hashlib.sha256(k.encode()).hexdigest() for k in keys) == sorted(hashes)
    assert not any(k in output for k in keys)


def test_seed_refuses_a_database_with_real_traffic_unless_forced(database_url: str) -> None:
    upgrade(database_url)

    async def real_account() -> None:
        engine = create_engine(database_url)
        try:
            account = await AccountStore(engine).create_account("real customer")
            await Ledger(engine).add_entry(account.id, "topup", 10**9)
        finally:
            await engine.dispose()

    asyncio.run(real_account())
    code, output = _seed(database_url, "--accounts", "2", "--generations", "10")
    assert code == 1 and "real traffic" in output
    code, output = _seed(database_url, "--accounts", "2", "--generations", "10", "--force")
    assert code == 0, output


async def _plans(database_url: str) -> dict[str, str]:
    engine = create_engine(database_url)
    today = datetime.now(UTC).date()
    postgres = engine.dialect.name == "postgresql"
    try:
        async with engine.connect() as conn:
            account: str = (await conn.execute(sa.select(accounts.c.id).order_by(accounts.c.name).limit(1))).scalar_one()
            queries = {
                "usage": account_usage_query(UsageFilter(start=today - timedelta(days=29), end=today,
                                                         account_id=account)),
                "revenue": deployment_usage_query(UsageFilter(start=today - timedelta(days=6), end=today)),
                "balance": sa.select(sa.func.sum(ledger.c.amount_nanos), sa.func.max(ledger.c.id))
                .where(ledger.c.account_id == account),
            }
            plans = {}
            for name, query in queries.items():
                sql = str(query.compile(engine.sync_engine, compile_kwargs={"literal_binds": True}))
                rows = (await conn.exec_driver_sql(("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + sql)).all()
                plans[name] = "\n".join(str(r[-1]) for r in rows)
    finally:
        await engine.dispose()
    return plans


def test_usage_and_report_queries_read_their_indexes(database_url: str) -> None:
    upgrade(database_url)
    # 40 accounts over 60 days: one account's month, or every account's week, is a small part of the table.
    code, output = _seed(database_url, "--accounts", "40", "--generations", "12000", "--days", "60")
    assert code == 0, output
    plans = asyncio.run(_plans(database_url))
    postgres = "postgresql" in database_url
    assert ("pk_usage_daily" if postgres else "sqlite_autoindex_usage_daily_1") in plans["usage"], plans["usage"]
    assert ("pk_usage_daily_deployments" if postgres else "sqlite_autoindex_usage_daily_deployments_1") \
        in plans["revenue"], plans["revenue"]
    assert "ix_ledger_account_covering" in plans["balance"], plans["balance"]
    if "sqlite" in database_url:  # SQLite says when the index alone answers
        assert "COVERING INDEX ix_ledger_account_covering" in plans["balance"]


async def _report_totals(database_url: str) -> tuple[list[RollupMismatch], dict[str, int], dict[str, int], int, int]:
    """(roll-up mismatches, balances as reported, Σ ledger per account, Σ billed cost reported, Σ from rows)."""
    engine = create_engine(database_url)
    try:
        wrong = await rollup_mismatches(engine)
        reported = await balances_by_account(engine)
        today = datetime.now(UTC).date()
        rows = await usage_by_deployment(engine, UsageFilter(start=today - timedelta(days=400), end=today))
        async with engine.connect() as conn:
            sums = dict((await conn.execute(sa.select(ledger.c.account_id, sa.func.sum(ledger.c.amount_nanos))
                                            .group_by(ledger.c.account_id))).all())
            billed = (await conn.execute(sa.select(sa.func.sum(generations.c.cost_nanos))
                                         .where(generations.c.status.in_(("succeeded", "cancelled"))))).scalar_one()
    finally:
        await engine.dispose()
    return wrong, reported, {k: int(v) for k, v in sums.items()}, sum(r.cost_nanos for r in rows), int(billed)


def test_rollups_agree_with_the_rows_after_seeding_and_a_rebuild(database_url: str) -> None:
    """The triggers of migration 0009 keep `usage_daily` and `account_balances` exact under bulk writes (COPY on
    PostgreSQL); `runapi db reconcile` says so, and finds and mends a hand-edited roll-up."""
    upgrade(database_url)
    code, output = _seed(database_url, "--accounts", "12", "--generations", "3000", "--days", "20")
    assert code == 0, output
    wrong, reported, sums, billed_reported, billed_rows = asyncio.run(_report_totals(database_url))
    assert wrong == [] and reported == sums and len(sums) == 12
    assert billed_reported == billed_rows > 0
    env = {"RUNAPI_DATABASE_URL": database_url, "RUNAPI_CONFIG": "", "COLUMNS": "200"}
    result = CliRunner().invoke(cli, ["db", "reconcile"], env=env)
    assert result.exit_code == 0 and "agree" in result.output, result.output

    async def tamper() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(account_balances.update().values(balance_nanos=account_balances.c.balance_nanos + 1))
        finally:
            await engine.dispose()

    asyncio.run(tamper())
    result = CliRunner().invoke(cli, ["db", "reconcile"], env=env)
    assert result.exit_code == 1 and "12 roll-up rows disagree" in result.output, result.output
    result = CliRunner().invoke(cli, ["db", "reconcile", "--rebuild"], env=env)
    assert result.exit_code == 0 and "agree" in result.output, result.output
    wrong, reported, sums, billed_reported, billed_rows = asyncio.run(_report_totals(database_url))
    assert wrong == [] and reported == sums and billed_reported == billed_rows
