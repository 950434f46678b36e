"""One contract suite for the stores, run against SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest
import sqlalchemy as sa

from runapi.accounting.credit import MemoryCreditGuard
from runapi.clock import utcnow
from runapi.errors import Conflict, InsufficientCredit, InvalidRequest, NotFound
from runapi.storage import (
    AccountStore,
    Generation,
    Ledger,
    Settlement,
    create_engine,
    hash_key,
    read_epoch,
    upgrade,
)


@pytest.fixture()
def migrated(database_url: str) -> Iterator[str]:
    upgrade(database_url)
    yield database_url


@pytest.fixture()
async def stores(migrated: str) -> AsyncIterator[tuple[AccountStore, Ledger]]:
    engine = create_engine(migrated)
    yield AccountStore(engine), Ledger(engine)
    await engine.dispose()


def generation(account_id: str, gen_id: str, cost: int) -> Generation:
    return Generation(id=gen_id, account_id=account_id, key_id="key_x", model="glm-4.5-air", provider="zai",
                      upstream_model="glm-4.5-air", status="succeeded", stream=False, input_tokens=5, output_tokens=12,
                      cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0, price_input="0.10",
                      price_output="0.55", price_cache_read="0.02", price_cache_write="0", cost_nanos=cost,
                      estimated=False, latency_ms=1.0, created_at=utcnow())


async def test_keys_are_stored_hashed_and_revocable(stores: tuple[AccountStore, Ledger]) -> None:
    accounts, _ = stores
    account = await accounts.create_account("acme")
    key, secret = await accounts.create_key(account.id, "ci")
    async with accounts.engine.connect() as conn:
        dump = " ".join(str(v) for row in (await conn.execute(sa.text("SELECT * FROM api_keys"))).all() for v in row)
    assert secret not in dump and hash_key(secret) in dump
    assert secret.startswith(key.prefix)
    found = await accounts.key_by_hash(hash_key(secret))
    assert found is not None and found.usable(utcnow())
    epoch = await read_epoch(accounts.engine)
    revoked = await accounts.revoke_key(key.id)
    assert revoked.revoked_at is not None and not revoked.usable(utcnow())
    assert await read_epoch(accounts.engine) == epoch + 1


async def test_account_names_are_unique(stores: tuple[AccountStore, Ledger]) -> None:
    accounts, _ = stores
    await accounts.create_account("acme")
    with pytest.raises(Conflict):
        await accounts.create_account("acme")
    with pytest.raises(NotFound):
        await accounts.find_account("nobody")


async def test_balance_is_the_ledger_sum(stores: tuple[AccountStore, Ledger]) -> None:
    accounts, ledger = stores
    account = await accounts.create_account("acme")
    await ledger.add_entry(account.id, "topup", 5_000_000_000)
    await ledger.add_entry(account.id, "adjustment", -1_250_000_000, "goodwill reversal")
    written = await ledger.record([Settlement(generation(account.id, "gen-1", 7100), 7100)])
    balance, high = await ledger.balance(account.id)
    assert balance == 5_000_000_000 - 1_250_000_000 - 7100
    assert high == written["gen-1"]
    with pytest.raises(InvalidRequest):
        await ledger.add_entry(account.id, "adjustment", -balance - 1)
    with pytest.raises(InvalidRequest):
        await ledger.add_entry(account.id, "topup", -5)


async def test_a_generation_is_charged_once_even_when_the_write_is_retried(stores: tuple[AccountStore, Ledger]) -> None:
    accounts, ledger = stores
    account = await accounts.create_account("acme")
    await ledger.add_entry(account.id, "topup", 1_000_000_000)
    batch = [Settlement(generation(account.id, "gen-a", 100), 100), Settlement(generation(account.id, "gen-b", 0), 0)]
    first = await ledger.record(batch)
    again = await ledger.record(batch)  # e.g. the acknowledgement of the first commit was lost
    assert set(first) == {"gen-a"} and again == {}
    balance, _ = await ledger.balance(account.id)
    assert balance == 1_000_000_000 - 100
    assert [e.kind for e in await ledger.entries(account.id)] == ["topup", "charge"]
    assert (await ledger.generation("gen-b")).status == "succeeded"


async def test_memory_credit_guard_holds_and_settles(stores: tuple[AccountStore, Ledger]) -> None:
    accounts, ledger = stores
    account = await accounts.create_account("acme")
    await ledger.add_entry(account.id, "topup", 1000)
    guard = MemoryCreditGuard(ledger)
    first = await guard.reserve(account.id, 600)
    with pytest.raises(InsufficientCredit):
        await guard.reserve(account.id, 500)
    ids = await ledger.record([Settlement(generation(account.id, "gen-1", 250), 250)])
    guard.charged(first, 250, ids["gen-1"])
    assert await guard.available(account.id) == 750
    second = await guard.reserve(account.id, 750)
    assert guard.cap_charge(second, 900) == 750  # never more than the hold plus the free balance
    guard.release(second)
    assert await guard.available(account.id) == 750
    assert Decimal(750) == Decimal((await ledger.balance(account.id))[0])
