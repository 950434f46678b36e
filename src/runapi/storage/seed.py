"""Synthetic accounts, keys, credit and history for benchmarks at production shape (issue 24).

`seed` writes N accounts, each with one key and a top-up, and M generations with their ledger
charges spread over the accounts, the models and the last D days, in creation order (like real
traffic: IDs and timestamps grow together). Bulk writes: COPY on PostgreSQL, executemany on SQLite.
The books balance: each account's top-up is its credit plus what its generations were charged, so
Σ ledger = credit for every account, and each charge equals its generation's cost (`reconcile`).

Keys are stored hashed like any key; their secrets are returned to the caller, never stored.
Seeded rows are recognisable (account names `seed-…`, ledger notes `seed`), so `has_traffic` can
tell a seeded database from one that served real calls.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from runapi.clock import utcnow
from runapi.money import Pricing, Usage, cost_nanos
from runapi.storage.accounts import KEY_PREFIX, KEY_SECRET_BYTES, hash_key, new_id
from runapi.storage.records import Generation
from runapi.storage.schema import (
    account_balances,
    accounts,
    api_keys,
    generations,
    ledger,
    usage_daily,
    usage_daily_deployments,
)

SEED_NOTE = "seed"
SEED_NAME_PREFIX = "seed-"
FAILED_SHARE = 0.02  # failed generations: no tokens, no charge
CANCELLED_SHARE = 0.01  # streams the client left: charged for what was generated

Progress = Callable[[str, int, int], None]  # (stage, rows done, rows in the stage)


class SeedModel(msgspec.Struct, frozen=True):
    """A deployment to spread generations over, with the price customers pay for it."""

    model: str
    provider: str
    upstream_model: str
    pricing: Pricing


class SeedPlan(msgspec.Struct, frozen=True):
    accounts: int
    generations: int
    credit_nanos: int = 100 * 10**9  # each account's balance once seeded
    days: int = 90  # generations spread over the last `days` UTC days, today included
    hot_generations: int = 0  # of `generations`, how many go to the first account
    tier: str = "free"
    batch: int = 20_000
    random_seed: int | None = None


class SeedResult(msgspec.Struct, frozen=True):
    run: str  # the seeded accounts are named `seed-<run>-<n>`
    accounts: int
    keys: int
    generations: int
    charges: int
    topups: int
    charged_nanos: int
    first_account_id: str
    first_account_generations: int
    secrets: list[str]  # each account's key, in account order; never stored


def _no_progress(_stage: str, _done: int, _total: int) -> None:
    return None


async def has_traffic(engine: AsyncEngine) -> bool:
    """Whether the database holds anything the seeder did not write: a generation of an account that
    is not a seeded one, or a ledger entry that is not a seeded one."""
    seeded = sa.select(accounts.c.id).where(accounts.c.name.like(SEED_NAME_PREFIX + "%"))
    real_generation = sa.select(generations.c.id).where(generations.c.account_id.not_in(seeded)).limit(1)
    real_entry = sa.select(ledger.c.id).where(ledger.c.note != SEED_NOTE).limit(1)
    async with engine.connect() as conn:
        return (await conn.execute(real_generation)).first() is not None \
            or (await conn.execute(real_entry)).first() is not None


def _generation(rng: random.Random, at: datetime, account_id: str, key_id: str, model: SeedModel) -> Generation:
    roll = rng.random()
    status = "failed" if roll < FAILED_SHARE else "cancelled" if roll < FAILED_SHARE + CANCELLED_SHARE else "succeeded"
    usage = Usage() if status == "failed" else Usage(
        input_tokens=rng.randint(20, 4_000), output_tokens=rng.randint(10, 1_200),
        cache_read_tokens=rng.choice((0, 0, 0, rng.randint(100, 2_000))))
    millis = int(at.timestamp() * 1000)
    return Generation(
        id=f"gen-{millis:012x}{secrets.token_hex(10)}", account_id=account_id, key_id=key_id, model=model.model,
        provider=model.provider, upstream_model=model.upstream_model, status=status, stream=rng.random() < 0.5,
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=0,
        reasoning_tokens=0, price_input=str(model.pricing.input), price_output=str(model.pricing.output),
        price_cache_read=str(model.pricing.cache_read), price_cache_write=str(model.pricing.cache_write),
        cost_nanos=cost_nanos(usage, model.pricing), estimated=False,
        latency_ms=round(rng.uniform(200, 3_000), 1), ttft_ms=None, overhead_ms=round(rng.uniform(0.2, 2.0), 2),
        error="upstream error (seeded)" if status == "failed" else None, created_at=at)


GENERATION_COLUMNS = tuple(c.name for c in generations.columns)
LEDGER_COLUMNS = ("account_id", "kind", "amount_nanos", "generation_id", "note", "created_at")


async def _copy(conn: AsyncConnection, table: sa.Table, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Bulk insert: COPY on PostgreSQL (asyncpg), executemany elsewhere."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.copy_records_to_table(table.name, records=[tuple(r[c] for c in columns) for r in rows],
                                           columns=list(columns))
    else:
        await conn.execute(table.insert(), rows)


def _timeline(plan: SeedPlan, now: datetime) -> Iterator[datetime]:
    """`plan.generations` instants, evenly over the period, in order."""
    start = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=plan.days - 1)
    span = (now - start).total_seconds()
    step = span / max(plan.generations, 1)
    for index in range(plan.generations):
        yield start + timedelta(seconds=index * step)


async def seed(engine: AsyncEngine, plan: SeedPlan, models: Sequence[SeedModel],
               progress: Progress = _no_progress) -> SeedResult:
    """Write the plan (see the module docstring); returns what was written and the keys' secrets."""
    if not models:
        raise ValueError("seeding needs at least one model")
    if plan.accounts < 1 or plan.generations < 0 or plan.hot_generations > plan.generations:
        raise ValueError("seeding needs at least one account, and no more hot generations than generations")
    rng = random.Random(plan.random_seed)
    now = utcnow()
    run = secrets.token_hex(3)
    account_ids = [new_id("acct") for _ in range(plan.accounts)]
    key_ids = [new_id("key") for _ in range(plan.accounts)]
    key_secrets = [KEY_PREFIX + secrets.token_urlsafe(KEY_SECRET_BYTES) for _ in range(plan.accounts)]
    opened = now - timedelta(days=plan.days + 1)
    for first in range(0, plan.accounts, plan.batch):
        chunk = range(first, min(first + plan.batch, plan.accounts))
        async with engine.begin() as conn:
            await _copy(conn, accounts, ("id", "name", "tier", "created_at", "tier_pinned"), [
                {"id": account_ids[i], "name": f"{SEED_NAME_PREFIX}{run}-{i:07d}", "tier": plan.tier,
                 "created_at": opened, "tier_pinned": False} for i in chunk])
            await _copy(conn, api_keys, ("id", "account_id", "name", "prefix", "key_hash", "created_at"), [
                {"id": key_ids[i], "account_id": account_ids[i], "name": "seed", "prefix": key_secrets[i][:10],
                 "key_hash": hash_key(key_secrets[i]), "created_at": opened} for i in chunk])
        progress("accounts", chunk.stop, plan.accounts)

    hot = set(rng.sample(range(plan.generations), plan.hot_generations)) if plan.hot_generations else set()
    others = range(1, plan.accounts) if plan.accounts > 1 and plan.hot_generations else range(plan.accounts)
    charged = [0] * plan.accounts
    written = charges = 0
    batch: list[Generation] = []

    async def flush() -> None:
        nonlocal written, charges
        rows = [{f: getattr(g, f) for f in GENERATION_COLUMNS} for g in batch]
        charge_rows = [{"account_id": g.account_id, "kind": "charge", "amount_nanos": -g.cost_nanos,
                        "generation_id": g.id, "note": SEED_NOTE, "created_at": g.created_at}
                       for g in batch if g.cost_nanos > 0]
        async with engine.begin() as conn:
            await _copy(conn, generations, GENERATION_COLUMNS, rows)
            await _copy(conn, ledger, LEDGER_COLUMNS, charge_rows)
        written, charges = written + len(rows), charges + len(charge_rows)
        batch.clear()
        progress("generations", written, plan.generations)

    for index, at in enumerate(_timeline(plan, now)):
        owner = 0 if index in hot else rng.choice(others)
        generation = _generation(rng, at, account_ids[owner], key_ids[owner], rng.choice(models))
        charged[owner] += generation.cost_nanos
        batch.append(generation)
        if len(batch) >= plan.batch:
            await flush()
    if batch:
        await flush()

    for first in range(0, plan.accounts, plan.batch):
        chunk = range(first, min(first + plan.batch, plan.accounts))
        async with engine.begin() as conn:
            await _copy(conn, ledger, LEDGER_COLUMNS, [
                {"account_id": account_ids[i], "kind": "topup", "amount_nanos": plan.credit_nanos + charged[i],
                 "generation_id": None, "note": SEED_NOTE, "created_at": opened} for i in chunk])
        progress("credit", chunk.stop, plan.accounts)
    await settle_statistics(engine)
    first_count = plan.hot_generations if plan.hot_generations else None
    return SeedResult(
        run=run, accounts=plan.accounts, keys=plan.accounts, generations=written, charges=charges, topups=plan.accounts,
        charged_nanos=sum(charged), first_account_id=account_ids[0],
        first_account_generations=first_count if first_count is not None else await _count(engine, account_ids[0]),
        secrets=key_secrets)


async def settle_statistics(engine: AsyncEngine) -> None:
    """On PostgreSQL, what autovacuum does to a table that grew by bulk inserts: VACUUM (the visibility map
    that lets index-only scans skip table rows) and ANALYZE (row counts for the planner)."""
    if engine.dialect.name != "postgresql":
        return
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in (accounts, api_keys, generations, ledger, usage_daily, usage_daily_deployments, account_balances):
            await conn.exec_driver_sql(f"VACUUM ANALYZE {table.name}")


async def _count(engine: AsyncEngine, account_id: str) -> int:
    query = sa.select(sa.func.count()).select_from(generations).where(generations.c.account_id == account_id)
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def unreconciled(engine: AsyncEngine, run: str, credit_nanos: int) -> list[str]:
    """The accounts of seed `run` whose books do not balance: Σ ledger ≠ `credit_nanos`, or a charge that
    is not its generation's cost. Empty when all is well."""
    seeded = sa.select(accounts.c.id).where(accounts.c.name.like(f"{SEED_NAME_PREFIX}{run}-%")).scalar_subquery()
    balances = sa.select(ledger.c.account_id).where(ledger.c.account_id.in_(seeded)) \
        .group_by(ledger.c.account_id).having(sa.func.sum(ledger.c.amount_nanos) != credit_nanos)
    charges = sa.select(ledger.c.account_id).join(generations, generations.c.id == ledger.c.generation_id) \
        .where(ledger.c.kind == "charge", ledger.c.account_id.in_(seeded),
               ledger.c.amount_nanos != -generations.c.cost_nanos).limit(10)
    async with engine.connect() as conn:
        wrong = [r[0] for r in (await conn.execute(balances.limit(10))).all()]
        wrong += [r[0] for r in (await conn.execute(charges)).all()]
    return sorted(set(wrong))
