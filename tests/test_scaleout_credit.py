"""The Redis credit guard as several instances see it: real Redis (a private server), real PostgreSQL.

Each "instance" is a `RedisCreditGuard` with its own settlement writer, as a gateway process has;
a crashed instance is a real process killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis import exceptions as redis_exceptions
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.accounting.credit import CreditGuard, Hold
from runapi.accounting.credit_redis import RedisCreditGuard
from runapi.accounting.settlement import SettlementWriter
from runapi.catalog import build_catalog, builtin_catalog_data
from runapi.clock import utcnow
from runapi.errors import InsufficientCredit, ServiceUnavailable
from runapi.limits import Quota, RedisRateLimiter
from runapi.limits.redis_limiter import ACQUIRE
from runapi.money import Usage, cost_nanos
from runapi.simulator import prompt_tokens
from runapi.storage import (
    AccountStore,
    AutoPipeline,
    Generation,
    Ledger,
    Settlement,
    create_engine,
    upgrade,
)
from runapi.storage.balance_snapshot import balance_snapshot, padded
from runapi.storage.invalidation import Change, ChangeBus
from runapi.storage.ledger import WRITEOFF_SUFFIX
from runapi.storage.redis_client import (
    HiredisPackingConnection,
    WaitingConnectionPool,
    redis_client,
)
from tests.support.clock import ManualClock
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.redis_server import RedisServer, redis_server
from tests.support.rollups import rollup_mismatches_of
from tests.support.sse import decode
from tests.support.tcp_proxy import tcp_proxy

USD = 1_000_000_000
HOLD = USD // 10


@pytest.fixture(scope="module")
def redis_srv() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def pg(postgres_url: str) -> str:
    upgrade(postgres_url)
    return postgres_url


@pytest.fixture()
async def engine(pg: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(pg)
    yield engine
    await engine.dispose()


class HeldCredit:
    """The credit part of a call's `Reservation` (the writer's `Closing`): this file tests the guard alone."""

    def __init__(self, guard: CreditGuard, hold: Hold) -> None:
        self.guard = guard
        self.hold = hold

    async def cover_overrun(self, settlement: Settlement) -> None:
        await self.guard.cover_overrun(self.hold, settlement)

    def journaled(self, settlement: Settlement) -> None:
        self.guard.shrink(self.hold, settlement.charge_nanos)

    def committed(self, settlement: Settlement) -> None:
        if settlement.ledger_id is None:
            self.guard.release(self.hold)
        else:
            self.guard.charged(self.hold, settlement.charge_nanos, settlement.ledger_id)


class Instance:
    """One gateway process's share of the accounting: a credit guard and a settlement writer."""

    def __init__(self, engine: AsyncEngine, redis_url: str, **options: Any) -> None:
        self.ledger = Ledger(engine)
        self.guard = RedisCreditGuard(self.ledger, redis_client(redis_url), **options)
        self.writer = SettlementWriter(self.ledger)
        self.writer.start()

    async def submit(self, settlement: Settlement, hold: Hold) -> None:
        await self.writer.submit(settlement, HeldCredit(self.guard, hold))

    async def settle(self, hold: Hold, charge: int) -> int | None:
        settlement = Settlement(generation(hold.account_id, "succeeded" if charge else "failed", charge), charge)
        await self.submit(settlement, hold)
        return settlement.ledger_id

    async def close(self) -> None:
        await self.writer.close()
        await self.guard.close()


@pytest.fixture()
async def instances(engine: AsyncEngine, redis_srv: RedisServer) -> AsyncIterator[list[Instance]]:
    started = [Instance(engine, redis_srv.url), Instance(engine, redis_srv.url)]
    yield started
    for instance in started:
        await instance.close()


def generation(account_id: str, status: str, cost: int) -> Generation:
    return Generation(
        id="gen-" + os.urandom(12).hex(), account_id=account_id, key_id="key_test", model="glm-4.5-air",
        provider="zai", upstream_model="glm-4.5-air", status=status, stream=False, input_tokens=10, output_tokens=10,
        cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0, price_input="0.10", price_output="0.55",
        price_cache_read="0.02", price_cache_write="0", cost_nanos=cost, estimated=False, latency_ms=1.0,
        created_at=utcnow())


async def new_account(engine: AsyncEngine, usd: int = 1) -> str:
    account = await AccountStore(engine).create_account(f"acct-{os.urandom(6).hex()}")
    await Ledger(engine).add_entry(account.id, "topup", usd * USD)
    return account.id


async def settled_available(instance: Instance, account_id: str, expected: int) -> int:
    """Available credit once every instance's queued hold closings reached Redis (a charge that lands
    after a reload that already counted it is counted twice, conservatively, until the next reload)."""
    deadline = time.monotonic() + 3
    while (available := await instance.guard.available(account_id)) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return available


async def try_reserve(instance: Instance, account_id: str, amount: int = HOLD) -> Hold | None:
    try:
        return await instance.guard.reserve(account_id, amount)
    except InsufficientCredit:
        return None


async def test_instances_share_one_balance_and_never_overdraw(engine: AsyncEngine, instances: list[Instance]) -> None:
    account = await new_account(engine)  # $1: room for exactly ten $0.10 holds
    a, b = instances
    holds = await asyncio.gather(*(try_reserve(instances[i % 2], account) for i in range(30)))
    granted = [h for h in holds if h is not None]
    assert len(granted) == 10

    # Settle at $0.05 each, on whichever instance took the hold; release the rest of each.
    await asyncio.gather(*(instances[i % 2].settle(h, HOLD // 2) for i, h in enumerate(granted)))
    balance, _ = await a.ledger.balance(account)
    assert balance == USD // 2
    assert await settled_available(a, account, balance) == await b.guard.available(account) == balance
    assert len([h for h in await asyncio.gather(*(try_reserve(b, account) for _ in range(8))) if h]) == 5


async def test_a_top_up_is_seen_after_invalidation(engine: AsyncEngine, instances: list[Instance]) -> None:
    account = await new_account(engine)
    a, b = instances
    held = [await a.guard.reserve(account, HOLD) for _ in range(10)]
    with pytest.raises(InsufficientCredit):
        await b.guard.reserve(account, HOLD)
    await a.ledger.add_entry(account, "topup", USD)
    b.guard.invalidate(account)
    assert await try_reserve(b, account) is not None
    for hold in held:
        await a.settle(hold, 0)
    assert await settled_available(a, account, 2 * USD - HOLD) == 2 * USD - HOLD


async def test_charged_entries_are_folded_into_the_balance(engine: AsyncEngine, redis_srv: RedisServer) -> None:
    account = await new_account(engine)
    instance = Instance(engine, redis_srv.url, compact_at=5)
    client = aioredis.Redis(port=redis_srv.port)
    charged = f"runapi:credit:{{{account}}}:charged"
    try:
        most = 0
        for _ in range(30):
            await instance.settle(await instance.guard.reserve(account, HOLD), 1_000_000)
            most = max(most, await client.hlen(charged))
        assert most < 20  # reloads folded charged entries into the balance along the way
        expected = USD - 30_000_000
        assert await settled_available(instance, account, expected) == expected == (await instance.ledger.balance(account))[0]
        instance.guard.invalidate(account)
        assert await instance.guard.available(account) == expected and await client.hlen(charged) == 0
    finally:
        await client.aclose()
        await instance.close()


async def test_a_live_instance_keeps_its_holds_past_their_ttl(engine: AsyncEngine, redis_srv: RedisServer,
                                                             instances: list[Instance]) -> None:
    account = await new_account(engine)
    busy = Instance(engine, redis_srv.url, hold_ttl_s=0.4)  # renewed every 0.1 s while its calls run
    try:
        holds = [await busy.guard.reserve(account, HOLD) for _ in range(10)]
        await asyncio.sleep(1.0)
        assert await try_reserve(instances[0], account) is None
        for hold in holds:
            await busy.settle(hold, 0)
        assert await try_reserve(instances[0], account) is not None
    finally:
        await busy.close()


CRASHING_INSTANCE = textwrap.dedent("""
    import asyncio, sys
    from runapi.accounting.credit_redis import RedisCreditGuard
    from runapi.storage import Ledger, create_engine
    from runapi.storage.redis_client import redis_client

    async def main() -> None:
        db, redis_url, account = sys.argv[1:]
        guard = RedisCreditGuard(Ledger(create_engine(db)), redis_client(redis_url), hold_ttl_s=0.5)
        for _ in range(10):
            await guard.reserve(account, 100_000_000)
        print("held", flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
""")


async def test_a_crashed_instance_holds_expire_and_its_charges_count(engine: AsyncEngine, pg: str,
                                                                     instances: list[Instance],
                                                                     redis_srv: RedisServer) -> None:
    account = await new_account(engine)
    crashed = subprocess.Popen([sys.executable, "-c", CRASHING_INSTANCE, pg, redis_srv.url, account],
                               stdout=subprocess.PIPE)
    try:
        assert crashed.stdout is not None and crashed.stdout.readline() == b"held\n"
        a, _ = instances
        with pytest.raises(InsufficientCredit):
            await a.guard.reserve(account, HOLD)
        # It committed one $0.30 charge before dying, and never told Redis.
        await a.ledger.record([Settlement(generation(account, "succeeded", 3 * HOLD), 3 * HOLD)])
    finally:
        crashed.kill()
        crashed.communicate()
    await asyncio.sleep(0.6)  # its holds' deadlines pass: nobody renews them
    holds = [await try_reserve(a, account) for _ in range(10)]
    assert len([h for h in holds if h]) == 7


async def test_redis_restarted_empty_keeps_calls_in_flight_covered(engine: AsyncEngine) -> None:
    with redis_server() as server:
        a, b = Instance(engine, server.url), Instance(engine, server.url)
        try:
            account = await new_account(engine)
            in_flight = [await a.guard.reserve(account, HOLD) for _ in range(10)]  # all the credit
            assert await try_reserve(b, account) is None
            server.restart()  # every key is gone, holds included
            started = time.monotonic()
            with pytest.raises(InsufficientCredit):  # a's holds were re-asserted before b could take any
                await b.guard.reserve(account, HOLD)
            assert time.monotonic() - started < 3
            for hold in in_flight[:4]:
                assert await a.settle(hold, HOLD // 2) is not None
            assert await settled_available(b, account, USD - 4 * HOLD // 2 - 6 * HOLD) == USD - 4 * HOLD // 2 - 6 * HOLD
            assert len([h for h in [await try_reserve(b, account) for _ in range(3)] if h]) == 2
        finally:
            await a.close()
            await b.close()


@contextlib.asynccontextmanager
async def hold_then_cut_off(engine: AsyncEngine, redis_srv: RedisServer
                            ) -> AsyncIterator[tuple[Instance, Any, str, Hold]]:
    """An instance that reaches Redis through a TCP proxy takes a hold on a new account, then the proxy
    is cut: (instance, proxy, account, hold). On exit the proxy listens again and the instance closes."""
    account = await new_account(engine)
    with tcp_proxy(redis_srv.port) as proxy:
        instance = Instance(engine, f"redis://127.0.0.1:{proxy.port}/0")
        try:
            hold = await instance.guard.reserve(account, HOLD)
            proxy.cut()
            yield instance, proxy, account, hold
        finally:
            proxy.restore()
            await instance.close()


async def test_redis_unreachable_fails_closed_and_catches_up(engine: AsyncEngine, redis_srv: RedisServer) -> None:
    async with hold_then_cut_off(engine, redis_srv) as (instance, proxy, account, hold):
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="Redis"):
            await instance.guard.reserve(account, HOLD)
        assert time.monotonic() - started < 2.5
        ledger_id = await instance.settle(hold, HOLD // 2)  # the database still takes the charge
        assert ledger_id is not None
        proxy.restore()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the queued closing reaches Redis
            try:
                if await instance.guard.available(account) == USD - HOLD // 2:
                    break
            except ServiceUnavailable:
                pass
            await asyncio.sleep(0.05)
        assert await instance.guard.available(account) == USD - HOLD // 2


async def test_balance_snapshot_says_which_entries_it_includes(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    try:
        account = await new_account(engine)
        ledger = Ledger(engine)
        ids = await ledger.record([Settlement(generation(account, "succeeded", 5), 5) for _ in range(3)])
        total, included = await balance_snapshot(engine, account, [*ids.values(), 10**12])
        assert total == USD - 15 and included == set(ids.values())
        assert await balance_snapshot(engine, account, []) == (USD - 15, set())
        # The sum comes from the roll-up the triggers keep: it agrees with Σ ledger after every kind of entry.
        await ledger.add_entry(account, "topup", 7 * USD)
        await ledger.add_entry(account, "adjustment", -3)
        assert (await balance_snapshot(engine, account, []))[0] == (await ledger.balance(account))[0] == 8 * USD - 18
        assert await balance_snapshot(engine, "acct_nobody", []) == (0, set())
    finally:
        await engine.dispose()


async def test_balance_snapshots_share_a_few_statements(database_url: str) -> None:
    """Any number of IDs up to a credit book's compaction (256) and past it: one statement text per power
    of two, so each pooled connection keeps a few prepared statements, not one per length."""
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    texts: set[str] = set()
    try:
        account = await new_account(engine)
        ids = list((await Ledger(engine).record([Settlement(generation(account, "succeeded", 5), 5)])).values())
        event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: texts.add(args[2]))
        for count in range(1, 301):
            total, included = await balance_snapshot(engine, account, [*ids, *range(10**12, 10**12 + count - 1)])
            assert total == USD - 5 and included == set(ids)
        assert len(texts) <= 10  # 1, 2, 4, ..., 512 IDs
        assert padded([7, 8, 9]) == [7, 8, 9, 9] and padded([]) == [] and padded(range(4)) == [0, 1, 2, 3]
    finally:
        await engine.dispose()


async def test_changes_reach_every_subscriber(redis_srv: RedisServer) -> None:
    received: list[Change] = []
    sender = ChangeBus(redis_client(redis_srv.url), lambda change: None)
    listener = ChangeBus(redis_client(redis_srv.url), received.append)
    listener.start()
    try:
        assert await listener.wait_subscribed(5)
        assert await sender.publish(Change("key", "key_1"))
        deadline = time.monotonic() + 1
        while not received and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert received == [Change("key", "key_1")]
    finally:
        await listener.close()
        await sender.close()


# -- calls that cost more than their hold, under the Redis guard ---------------------------------------
# A hold is a true upper bound where the catalog tells the truth (`pipeline/hold_bound.py`). glm-4.5-air's
# entry says its upstream counts reasoning inside max_tokens; the simulator's `reasoning_tokens` come on
# top of max_tokens, breaking that promise, so these calls cost far more than their hold.

HELLO = [{"role": "user", "content": "hello there"}]
OVERRUN_BODY = {"model": "glm-4.5-air", "messages": HELLO, "max_tokens": 12,  # the simulator answers 12 tokens
              "x_sim": {"reasoning_tokens": 1000}}  # ... and reasons for 1,000 more
_PRICING = build_catalog(builtin_catalog_data(), {}, {}).models["glm-4.5-air"].pricing
OVERRUN_HOLD = cost_nanos(Usage(input_tokens=len(HELLO[0]["content"]) + 12, output_tokens=12),
                          _PRICING)  # the prompt's bytes, + 12 framing bytes per message
OVERRUN_COST = cost_nanos(Usage(input_tokens=prompt_tokens(HELLO), output_tokens=12 + 1000), _PRICING)
NANO = Decimal("0.000000001")


@pytest.fixture(scope="module")
def redis_gateways(pg: str, redis_srv: RedisServer, sim_url: str) -> Iterator[list[RunningGateway]]:
    """Two gateways (two credit guards) sharing PostgreSQL and Redis."""
    env = {"RUNAPI_REDIS_URL": redis_srv.url}
    with run_gateway(pg, sim_url, env=env) as first, run_gateway(pg, sim_url, env=env) as second:
        yield [first, second]


def charges(gateway: RunningGateway, account_id: str) -> dict[str, Decimal]:
    """{generation ID: charged USD} from the account's ledger (charges are at full cost)."""
    return {e["generation_id"]: -Decimal(str(e["amount"])) for e in gateway.ledger(account_id) if e["kind"] == "charge"}


def writeoffs(gateway: RunningGateway, account_id: str) -> dict[str, Decimal]:
    """{generation ID: USD written off} from the account's ledger."""
    return {e["generation_id"].removesuffix(WRITEOFF_SUFFIX): Decimal(str(e["amount"]))
            for e in gateway.ledger(account_id) if e["kind"] == "writeoff"}


def paid(gateway: RunningGateway, account_id: str) -> dict[str, Decimal]:
    """{generation ID: USD taken from the balance}: each charge less its write-off."""
    written_off = writeoffs(gateway, account_id)
    return {generation: charge - written_off.get(generation, Decimal(0))
            for generation, charge in charges(gateway, account_id).items()}


def generation_cost(gateway: RunningGateway, key: str, generation_id: str) -> Decimal:
    row = decode(httpx.get(f"{gateway.base_url}/v1/generations/{generation_id}",
                           headers={"authorization": f"Bearer {key}"}).raise_for_status().content)
    return Decimal(str(row["cost"]))


def test_the_overrun_fixture_really_overruns() -> None:
    assert OVERRUN_HOLD == 8_900 and OVERRUN_COST == 557_100  # 23 + 12 tokens held, 5 + 1,012 used


def test_an_overrun_is_charged_in_full_when_the_account_has_credit(redis_gateways: list[RunningGateway]) -> None:
    gateway = redis_gateways[0]
    account, key = gateway.create_account("10")
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=OVERRUN_BODY,
                          headers={"authorization": f"Bearer {key}"}, timeout=30).raise_for_status()
    answer = decode(response.content)
    cost = OVERRUN_COST * NANO
    assert answer["usage"]["prompt_tokens"] == prompt_tokens(HELLO) and answer["usage"]["cost"] == cost
    assert charges(gateway, account) == {answer["id"]: cost} and writeoffs(gateway, account) == {}  # not just the hold
    assert generation_cost(gateway, key, answer["id"]) == cost
    assert gateway.balance(account) == Decimal(10) - cost == gateway.ledger_sum(account)


def test_an_overrun_takes_only_the_free_balance(redis_gateways: list[RunningGateway]) -> None:
    gateway = redis_gateways[1]
    credit = (OVERRUN_HOLD + 50_000) * NANO  # the hold, and a part of the overrun
    account, key = gateway.create_account(credit)
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=OVERRUN_BODY,
                          headers={"authorization": f"Bearer {key}"}, timeout=30).raise_for_status()
    answer = decode(response.content)
    cost = OVERRUN_COST * NANO
    assert paid(gateway, account) == {answer["id"]: credit}  # hold + free, never more
    # ... written as a charge at full cost and an explicit write-off of what the balance did not cover
    assert charges(gateway, account) == {answer["id"]: cost} and writeoffs(gateway, account) == {answer["id"]: cost - credit}
    assert generation_cost(gateway, key, answer["id"]) == cost  # the row keeps the true cost
    assert gateway.balance(account) == 0 == gateway.ledger_sum(account)
    refused = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=OVERRUN_BODY,
                         headers={"authorization": f"Bearer {key}"}, timeout=30)
    assert refused.status_code == 402


def test_concurrent_overruns_on_two_gateways_never_overdraw(redis_gateways: list[RunningGateway]) -> None:
    credit = (OVERRUN_COST * 10 + 123_456) * NANO  # ten calls in full, then a partial one
    first = redis_gateways[0]
    account, key = first.create_account(credit)
    body = {**OVERRUN_BODY, "x_sim": {**OVERRUN_BODY["x_sim"], "latency_ms": 200}}  # calls overlap: holds are taken before any settles

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60, headers={"authorization": f"Bearer {key}"}) as client:
            return list(await asyncio.gather(*(client.post(f"{redis_gateways[i % 2].base_url}/v1/chat/completions",
                                                           json=body) for i in range(40))))

    for _ in range(3):  # rounds: later ones start while earlier charges are still being folded in
        statuses = [r.status_code for r in asyncio.run(send_all())]
        assert set(statuses) <= {200, 402}, statuses
    charged = paid(first, account)
    cost = OVERRUN_COST * NANO
    assert all(c == cost for c in charges(first, account).values())  # every charge line at full cost
    assert all(OVERRUN_HOLD * NANO <= c <= cost for c in charged.values())  # at least the hold, never above cost
    short = [c for c in charged.values() if c < cost]
    balance = first.balance(account)
    assert balance == first.ledger_sum(account) == credit - sum(charged.values()) >= 0
    assert len(charged) >= 10
    # A call is charged less than its cost only when nothing was left: then the account is empty.
    assert not short or balance == 0
    assert balance < OVERRUN_HOLD * NANO  # the last calls were refused (402) for want of credit, not lost
    assert rollup_mismatches_of(first.settings.database_url) == []  # two writers' roll-ups (and write-offs) exact


async def test_an_overrun_keeps_its_capped_charge_when_redis_is_away(engine: AsyncEngine,
                                                                    redis_srv: RedisServer) -> None:
    async with hold_then_cut_off(engine, redis_srv) as (instance, _, account, hold):
        # As the pipeline settles a call that cost 3× its hold: the guard capped the charge at the hold.
        settlement = Settlement(generation(account, "succeeded", 3 * HOLD), instance.guard.cap_charge(hold, 3 * HOLD))
        started = time.monotonic()
        await instance.submit(settlement, hold)
        assert time.monotonic() - started < 3  # not blocked on Redis
        assert settlement.charge_nanos == HOLD and settlement.ledger_id is not None  # written, not dropped
        assert (await instance.ledger.balance(account))[0] == USD - HOLD
        assert (await instance.ledger.generation(settlement.generation.id)).cost_nanos == 3 * HOLD


async def test_an_overrun_grows_the_hold_it_settles(engine: AsyncEngine, instances: list[Instance]) -> None:
    """The guard level: the extra comes from the credit no instance holds, and the hold closes cleanly."""
    account = await new_account(engine)  # $1
    a, b = instances
    others = [await b.guard.reserve(account, HOLD) for _ in range(7)]  # $0.70 held elsewhere
    hold = await a.guard.reserve(account, HOLD)  # $0.10: $0.20 stays free
    settlement = Settlement(generation(account, "succeeded", 5 * HOLD), a.guard.cap_charge(hold, 5 * HOLD))
    await a.submit(settlement, hold)
    assert settlement.charge_nanos == 3 * HOLD  # the hold + all that was free, not the $0.50 cost
    assert (await a.ledger.balance(account))[0] == USD - 3 * HOLD
    assert await settled_available(a, account, 0) == 0  # b's holds are intact
    for other in others:
        await b.settle(other, HOLD)
    assert await settled_available(b, account, 0) == 0 == (await b.ledger.balance(account))[0]


async def test_a_hold_rides_the_rate_limiters_admission(engine: AsyncEngine, instances: list[Instance],
                                                         redis_srv: RedisServer) -> None:
    """Once an account is warm, the hold is taken by the limiter's admission script: only when the call
    is admitted, never beyond the balance, and closed like any other hold."""
    account = await new_account(engine)  # $1
    a, b = instances
    limiter = RedisRateLimiter.from_url(redis_srv.url)
    try:
        assert a.guard.rider(account, HOLD) is None  # cold: `reserve` loads the account first
        first = await a.guard.reserve(account, HOLD)
        three_per_minute = [Quota(f"acct:{account}", requests_per_minute=3)]
        taken = []
        for _ in range(5):
            rider = a.guard.rider(account, HOLD)
            assert rider is not None
            decision = await limiter.acquire(account, three_per_minute, 10, rider)
            hold = a.guard.take(rider)
            assert (hold is not None) == (decision.ticket is not None)  # refused: no hold was taken
            if hold is not None:
                taken.append(hold)
        assert len(taken) == 3 and a.guard.take(rider) is None
        assert await b.guard.available(account) == USD - 4 * HOLD

        unlimited = [Quota(f"key:{account}")]
        rider = a.guard.rider(account, USD)  # more than is free: admitted, but no hold
        assert rider is not None
        assert (await limiter.acquire(account, unlimited, 10, rider)).ticket is not None
        assert a.guard.take(rider) is None
        with pytest.raises(InsufficientCredit):
            await a.guard.reserve(account, USD)

        ledger_ids = [await a.settle(hold, HOLD // 2) for hold in [first, *taken]]
        assert all(ledger_ids)
        balance, _ = await a.ledger.balance(account)
        assert balance == USD - 4 * (HOLD // 2)
        assert await settled_available(b, account, balance) == balance
    finally:
        await limiter.close()


async def test_a_script_flush_mid_traffic_takes_each_riding_hold_once(engine: AsyncEngine, instances: list[Instance],
                                                                       redis_srv: RedisServer) -> None:
    """Admissions with riding holds, batched per loop turn (`AutoPipeline`), while Redis's script cache is
    emptied: the calls that failed with NOSCRIPT run again, the others do not, so each admission is
    counted once by the rate limiter and each hold is held once."""
    account = await new_account(engine)  # $1
    a, b = instances
    small, calls = USD // 200, 120
    limiter = RedisRateLimiter.from_url(redis_srv.url, ManualClock(time.time()))  # no refill while it runs
    flusher = redis_client(redis_srv.url)
    quota = [Quota(f"acct:{account}", requests_per_minute=calls)]
    holds: list[Hold] = []
    halfway = asyncio.Event()

    async def caller() -> None:
        for _ in range(calls // 8):
            rider = a.guard.rider(account, small)
            assert rider is not None
            decision = await limiter.acquire(account, quota, 1, rider)
            hold = a.guard.take(rider)
            assert decision.ticket is not None and hold is not None
            holds.append(hold)
            if len(holds) >= calls // 3:
                halfway.set()

    async def flush() -> None:
        await halfway.wait()
        await flusher.script_flush()

    try:
        await a.guard.reserve(account, small)  # warm: the account is loaded, the holds ride from here on
        await asyncio.gather(*(caller() for _ in range(8)), flush())
        assert (await limiter.acquire(account, quota, 1)).denied == "requests"  # `calls` admissions counted
        assert len(holds) == calls and await b.guard.available(account) == USD - (calls + 1) * small
    finally:
        await flusher.aclose()
        await limiter.close()


async def test_many_holds_closed_at_once_count_each_charge_once(engine: AsyncEngine, instances: list[Instance]
                                                                ) -> None:
    """250 holds of two accounts closed together (on Redis: one flush, several SETTLE calls for the
    first account): every hold is dropped and every charge counted once."""
    small = USD // 1000
    accounts = [await new_account(engine), await new_account(engine)]
    a, b = instances
    holds = [await a.guard.reserve(accounts[i % 5 == 0], small) for i in range(250)]  # 200 and 50
    assert await b.guard.available(accounts[0]) == USD - 200 * small
    charges = [small // 2 if i % 2 else 0 for i in range(250)]  # every other hold released
    await asyncio.gather(*(a.settle(hold, charge) for hold, charge in zip(holds, charges, strict=True)))
    for index, account in enumerate(accounts):
        balance, _ = await a.ledger.balance(account)
        assert balance == USD - sum(c for i, c in enumerate(charges) if (i % 5 == 0) == bool(index))
        assert await settled_available(b, account, balance) == balance


class CountingConnection(HiredisPackingConnection):
    """Counts the writes of every connection of its class."""

    writes = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.writes += 1
        await super().send_packed_command(command, check_health)


@pytest.fixture()
async def shared(engine: AsyncEngine, redis_srv: RedisServer
                 ) -> AsyncIterator[tuple[RedisCreditGuard, RedisRateLimiter]]:
    """A credit guard and a rate limiter sharing one client and one `AutoPipeline`, as in the gateway."""
    client = aioredis.Redis.from_pool(WaitingConnectionPool.from_url(redis_srv.url,
                                                                     connection_class=CountingConnection))
    pipeline = AutoPipeline(client)
    guard = RedisCreditGuard(Ledger(engine), client, pipeline=pipeline, heartbeat_s=60)
    limiter = RedisRateLimiter(client, ManualClock(time.time()), prefix=f"t-{os.urandom(4).hex()}",
                               pipeline=pipeline)
    try:
        yield guard, limiter
    finally:
        await limiter.close()
        await guard.close()
        await client.aclose()


async def test_hold_closings_and_admissions_of_one_turn_share_one_write(
        engine: AsyncEngine, shared: tuple[RedisCreditGuard, RedisRateLimiter]) -> None:
    """The credit guard's flush (SETTLE) and the limiter's admissions made in one loop turn go to Redis
    in one batch, and each caller gets its own reply."""
    guard, limiter = shared
    account = await new_account(engine)
    holds = [await guard.reserve(account, HOLD) for _ in range(3)]
    three = [Quota(f"acct:{account}", requests_per_minute=3)]
    guard.release(holds[0])
    for index, hold in enumerate(holds[1:]):
        guard.charged(hold, HOLD // 2, 10**12 + index)
    before = CountingConnection.writes
    _, *decisions = await asyncio.gather(guard._flush(False), *(limiter.acquire(account, three, 1) for _ in range(5)))
    assert CountingConnection.writes - before == 1  # the closings and the admissions in one write
    assert [d.ticket is not None for d in decisions] == [True, True, True, False, False]
    state, held, _, charged, _ = guard._keys(account)
    assert await guard._redis.hlen(held) == 0 and await guard._redis.hlen(charged) == 2
    assert int(await guard._redis.hget(state, "held")) == 0 and int(await guard._redis.hget(state, "spent")) == HOLD


async def test_a_script_flush_settles_each_hold_once_beside_admissions(
        engine: AsyncEngine, shared: tuple[RedisCreditGuard, RedisRateLimiter]) -> None:
    """Redis forgot SETTLE (SCRIPT FLUSH) but knows the admission script: in the shared batch only SETTLE
    runs again; every admission counts once and every hold is closed and charged once."""
    guard, limiter = shared
    account = await new_account(engine)
    holds = [await guard.reserve(account, HOLD // 10) for _ in range(6)]
    four = [Quota(f"acct:{account}", requests_per_minute=4)]
    await guard._redis.script_flush()
    await guard._redis.script_load(ACQUIRE)
    for index, hold in enumerate(holds):
        guard.charged(hold, HOLD // 20, 10**12 + index)
    _, *decisions = await asyncio.gather(guard._flush(False), *(limiter.acquire(account, four, 1) for _ in range(4)))
    assert all(d.ticket is not None for d in decisions)
    assert (await limiter.acquire(account, four, 1)).denied == "requests"  # exactly four were counted
    state, held, _, charged, _ = guard._keys(account)
    assert await guard._redis.hlen(held) == 0 and await guard._redis.hlen(charged) == 6
    assert int(await guard._redis.hget(state, "spent")) == 6 * (HOLD // 20) == int(await guard._redis.hget(state, "charged"))
    assert not guard._closing


async def test_a_failed_settle_is_queued_again_and_the_others_are_not(
        engine: AsyncEngine, shared: tuple[RedisCreditGuard, RedisRateLimiter]) -> None:
    """Per call: a SETTLE that failed (here its account's keys hold the wrong type) keeps its closings
    queued and the flush raises; the other account's SETTLE ran and is not queued again."""
    guard, _ = shared
    good, bad = await new_account(engine), await new_account(engine)
    kept = await guard.reserve(good, HOLD)
    lost = await guard.reserve(bad, HOLD)
    await guard._redis.delete(guard._keys(bad)[1])
    await guard._redis.set(guard._keys(bad)[1], "not a hash")  # SETTLE's HGET fails on it: WRONGTYPE
    guard.release(kept)
    guard.release(lost)
    with pytest.raises(redis_exceptions.ResponseError):
        await guard._flush(False)
    assert [hold for hold, _, _ in guard._closing] == [lost]
    assert await guard._redis.hlen(guard._keys(good)[1]) == 0
    await guard._redis.delete(guard._keys(bad)[1])
    await guard._flush(False)
    assert not guard._closing


async def test_a_snapshot_reads_its_charges_by_primary_key_not_the_accounts_history(pg: str) -> None:
    """The snapshot's charge-ID lookup touches those rows only, however long the account's ledger: with the
    account in its condition PostgreSQL chose the account's index on a growing table and read the whole
    history every 256 charges (the database's CPU per request grew 0.24 -> 0.92 ms in 30 s of load)."""
    engine = create_engine(pg)
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "account_balances" in statement:
            statements.append((statement, parameters))

    try:
        account = await new_account(engine)
        async with engine.begin() as conn:  # a long history, statistics not yet gathered (a table that grew)
            await conn.exec_driver_sql(
                "INSERT INTO ledger (account_id, kind, amount_nanos, note, created_at) "
                f"SELECT '{account}', 'adjustment', 0, '', now() FROM generate_series(1, 20000)")
        ids = await Ledger(engine).record([Settlement(generation(account, "succeeded", 5), 5) for _ in range(3)])
        event.listen(engine.sync_engine, "before_cursor_execute", capture)
        total, included = await balance_snapshot(engine, account, list(ids.values()))
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
        assert total == USD - 15 and included == set(ids.values())
        (statement, parameters), = statements
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            plan = await raw.driver_connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *parameters)

        def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
            yield node
            for child in node.get("Plans", []):
                yield from nodes(child)

        every = list(nodes(plan[0]["Plan"]))  # SQLAlchemy's asyncpg connections decode json
        indexes = {node["Index Name"] for node in every if "Index Name" in node}
        on_ledger = [node for node in every if node.get("Relation Name") == "ledger"]
        assert indexes <= {"ledger_pkey", "account_balances_pkey"} and "ledger_pkey" in indexes, indexes
        assert on_ledger and all(node["Node Type"] != "Seq Scan" for node in on_ledger)
        assert sum(node["Actual Rows"] for node in on_ledger) <= 3  # the three charges, not the history
    finally:
        await engine.dispose()
