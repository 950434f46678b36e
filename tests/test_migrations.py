"""Schema migrations on SQLite and PostgreSQL: from an empty database, one step back and forward again,
and an instance that refuses to serve a schema it does not know."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from runapi.cli.main import app as cli
from runapi.storage import (
    AccountStore,
    Ledger,
    SchemaMismatch,
    check_schema,
    create_engine,
    upgrade,
)
from runapi.storage.database import alembic_config, current_revision, head_revision
from runapi.storage.schema import metadata

REVISIONS = [s.revision for s in reversed(list(ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()))]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _revision_and_diff(url: str) -> tuple[str | None, list[Any]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
        return await current_revision(engine), diff
    finally:
        await engine.dispose()


async def _check(url: str) -> None:
    engine = create_engine(url)
    try:
        await check_schema(engine)
    finally:
        await engine.dispose()


def test_revisions_form_one_line() -> None:
    # head_revision() is a constant (serve checks the schema without Alembic): the newest script's.
    assert REVISIONS[-1] == head_revision() and len(set(REVISIONS)) == len(REVISIONS) >= 2
    assert ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() == head_revision()


def test_upgrade_from_empty_builds_the_schema_the_code_uses(database_url: str) -> None:
    with pytest.raises(SchemaMismatch, match="empty database"):
        run(_check(database_url))
    upgrade(database_url)
    revision, diff = run(_revision_and_diff(database_url))
    assert revision == head_revision()
    assert diff == []  # every table, column and index of `schema.py`, nothing else
    run(_check(database_url))


async def _book(url: str, account_id: str | None = None) -> tuple[str, int]:
    """Create an account with a top-up (or read one back): (account ID, balance)."""
    engine = create_engine(url)
    try:
        if account_id is None:
            account_id = (await AccountStore(engine).create_account("kept")).id
            await Ledger(engine).add_entry(account_id, "topup", 1_500_000_000, "before the downgrade")
        await AccountStore(engine).get_account(account_id)
        return account_id, (await Ledger(engine).balance(account_id))[0]
    finally:
        await engine.dispose()


def test_downgrade_one_revision_then_upgrade_keeps_the_data(database_url: str) -> None:
    upgrade(database_url)
    account_id, balance = run(_book(database_url))
    command.downgrade(alembic_config(database_url), "-1")
    with pytest.raises(SchemaMismatch, match=f"at revision {REVISIONS[-2]}"):
        run(_check(database_url))
    upgrade(database_url)
    run(_check(database_url))
    assert run(_book(database_url, account_id)) == (account_id, balance) == (account_id, 1_500_000_000)


def test_every_revision_upgrades_from_the_one_before(database_url: str) -> None:
    for revision in REVISIONS:
        upgrade(database_url, revision)
        assert run(_revision_and_diff(database_url))[0] == revision
    command.downgrade(alembic_config(database_url), "base")
    assert run(_revision_and_diff(database_url))[0] is None


def _serve(database_url: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["serve", "--port", "1"], env={"RUNAPI_DATABASE_URL": database_url,
                                                                      "RUNAPI_REDIS_URL": "", "RUNAPI_CONFIG": ""})
    return result.exit_code, " ".join(result.output.split())


def test_serve_refuses_an_older_schema_and_says_to_upgrade(database_url: str) -> None:
    upgrade(database_url, REVISIONS[-2])
    code, output = _serve(database_url)
    assert code == 2
    assert f"at revision {REVISIONS[-2]}" in output and "run `runapi db upgrade` first" in output
    assert CliRunner().invoke(cli, ["db", "upgrade"], env={"RUNAPI_DATABASE_URL": database_url,
                                                           "RUNAPI_CONFIG": ""}).exit_code == 0
    run(_check(database_url))


def test_serve_refuses_a_newer_schema(database_url: str) -> None:
    upgrade(database_url)

    async def from_the_future() -> None:
        engine = create_engine(database_url)
        async with engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        await engine.dispose()

    run(from_the_future())
    code, output = _serve(database_url)
    assert code == 2 and re.search(r"at revision 9999, this RunAPI needs \w+", output)
