"""The report roll-ups (migration 0009) against the rows they sum, for tests that write money."""

from __future__ import annotations

import asyncio

from runapi.storage import RollupMismatch, create_engine, rollup_mismatches


def rollup_mismatches_of(database_url: str) -> list[RollupMismatch]:
    """Every `usage_daily` group and `account_balances` row that differs from the generation and ledger rows
    (read with an engine of its own, after the writers have flushed)."""
    async def read() -> list[RollupMismatch]:
        engine = create_engine(database_url)
        try:
            return await rollup_mismatches(engine)
        finally:
            await engine.dispose()

    return asyncio.run(read())
