"""The settlement journal: answers leave before their commit, and a killed gateway loses no charge.

The database is locked by this test (an open write transaction on the SQLite file) so that no
settlement can commit; the answers still arrive, which proves they did not wait for the commit.
The gateway is then SIGKILLed and the lock released: the next start replays the journal, and every
answered call is charged exactly once.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
from decimal import Decimal
from pathlib import Path

import httpx

from runapi.accounting.journal import SettlementJournal, journal_directory
from runapi.storage import Generation, Settlement, upgrade
from runapi.storage.settlement_sink import SqliteSettlementSink
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, sqlite_url
from tests.support.instances import (
    ServeProcess,
    admin_client,
    funded_account,
    write_config,
)
from tests.support.sse import decode, sse_data

MESSAGES = [{"role": "user", "content": "hello there"}]
TIERS = "\n[tiers.free]\nconcurrent_requests = 100\nrequests_per_minute = 10000\ntokens_per_minute = 100000000\n"


def _serve_env(tmp_path: Path, sim_url: str) -> tuple[dict[str, str], Path]:
    database_url = sqlite_url(tmp_path)
    upgrade(database_url)
    env = {**os.environ, "RUNAPI_DATABASE_URL": database_url, "RUNAPI_ADMIN_TOKEN": ADMIN_TOKEN,
           "RUNAPI_CONFIG": str(write_config(tmp_path / "runapi.toml", sim_url, TIERS))}
    env.pop("RUNAPI_REDIS_URL", None)
    return env, tmp_path / "runapi.db"


def test_answers_do_not_wait_for_the_commit_and_survive_sigkill(sim_url: str, tmp_path: Path) -> None:
    env, database = _serve_env(tmp_path, sim_url)
    journal = journal_directory("auto", env["RUNAPI_DATABASE_URL"])
    assert journal == Path(str(database) + "-journal.d")
    first = ServeProcess(env, tmp_path / "first.log")
    lock = sqlite3.connect(database, isolation_level=None, timeout=30)
    try:
        first.wait_ready()
        admin = admin_client(first.base_url)
        account, auth = funded_account(admin, "journaled", "1")
        warm = httpx.post(f"{first.base_url}/v1/chat/completions", headers=auth, timeout=30,
                          json={"model": "glm-4.5-air", "messages": MESSAGES}).raise_for_status().json()
        assert admin.get(f"/v1/generations/{warm['id']}", headers=auth).status_code == 200  # read-your-writes

        lock.execute("BEGIN IMMEDIATE")  # from here on no settlement can commit
        answered = {warm["id"]: Decimal(str(warm["usage"]["cost"]))}
        for _ in range(3):
            reply = httpx.post(f"{first.base_url}/v1/chat/completions", headers=auth, timeout=10,
                               json={"model": "glm-4.5-air", "messages": MESSAGES}).raise_for_status().json()
            answered[reply["id"]] = Decimal(str(reply["usage"]["cost"]))
        streamed = httpx.post(f"{first.base_url}/v1/chat/completions", headers=auth, timeout=10,
                              json={"model": "glm-4.5-air", "messages": MESSAGES, "stream": True,
                                    "stream_options": {"include_usage": True}})
        events = sse_data(streamed.raise_for_status().text)
        assert events[-1] == "[DONE]"
        usage_event = decode(events[-2])
        answered[usage_event["id"]] = Decimal(str(usage_event["usage"]["cost"]))
        assert len(answered) == 5
        segments = list(journal.glob("*.journal"))
        assert segments and sum(p.stat().st_size for p in segments) > 0  # the four locked-out settlements

        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        admin.close()
    finally:
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
        first.stop()

    second = ServeProcess(env, tmp_path / "second.log")
    try:
        second.wait_ready()
        with admin_client(second.base_url) as admin2:
            ledger = admin2.get(f"/admin/accounts/{account}/ledger").raise_for_status().json()["data"]
            charges = {e["generation_id"]: -Decimal(str(e["amount"])) for e in ledger if e["kind"] == "charge"}
            assert charges == answered  # every answered call, once, at the cost its answer reported
            balance = Decimal(str(admin2.get(f"/admin/accounts/{account}").json()["balance"]))
            assert balance == Decimal(1) - sum(answered.values())
            rows = admin2.get("/admin/generations", params={"account_id": account}).json()["data"]
            assert sorted(r["id"] for r in rows) == sorted(answered)
        assert list(journal.glob("*.journal")) == []  # replayed and removed
    finally:
        second.stop()
    assert "4 charges written now" in (tmp_path / "second.log").read_text()  # the warm call's was committed


def _settlement(account_id: str, n: int, charge: int) -> Settlement:
    generation = Generation(
        id=f"gen-journal-{account_id[-8:]}-{n}", account_id=account_id, key_id="key", model="glm-4.5-air", provider="zai",
        upstream_model="glm-4.5-air", status="succeeded", stream=False, input_tokens=10, output_tokens=n,
        cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0, price_input="0.10", price_output="0.55",
        price_cache_read="0.02", price_cache_write="0", cost_nanos=charge, estimated=False, latency_ms=1.0,
        created_at=dt.datetime.now(dt.UTC))
    return Settlement(generation, charge)


async def test_replay_is_idempotent_and_ignores_a_torn_tail(gateway: RunningGateway, tmp_path: Path) -> None:
    """Settlements already committed before the crash are skipped on replay; a record cut by the crash
    is ignored; a live process's segment (locked) is left alone."""
    account, _ = gateway.create_account("1")
    database = gateway.settings.database_url.split("///", 1)[1]
    directory = tmp_path / "journal"
    dead = SettlementJournal(directory)
    settlements = [_settlement(account, n, 1_000_000 * n) for n in range(1, 5)]
    segments = [dead.append(s) for s in settlements]
    sink = SqliteSettlementSink(database)
    try:
        await sink.record(settlements[:2])  # committed before the "crash", the journal not yet told
        os.write(segments[0].fd, b"\x40\x00\x00\x00partial")  # the process died inside a write
        os.close(segments[0].fd)  # ... and the kernel dropped its lock

        live = SettlementJournal(directory)
        live.append(_settlement(account, 9, 9))
        recovered = await SettlementJournal(directory).recover(sink)
        assert [s.generation.id for s in recovered] == [s.generation.id for s in settlements]
        assert await SettlementJournal(directory).recover(sink) == []  # the dead segment is gone
        assert [p.name for p in directory.glob("*.journal")] == [live._current.path.name]  # type: ignore[union-attr]
    finally:
        await sink.close()
    charges = [e for e in gateway.ledger(account) if e["kind"] == "charge"]
    assert sorted(e["generation_id"] for e in charges) == [s.generation.id for s in settlements]
    assert gateway.balance(account) == Decimal(1) - Decimal("0.010")  # 1+2+3+4 millionths of a dollar ×1000


async def test_a_writer_too_far_behind_makes_callers_wait_for_the_commit(gateway: RunningGateway,
                                                                         tmp_path: Path) -> None:
    """Journaled answers do not wait, but only up to `max_backlog` uncommitted settlements: then callers
    wait for the commit, so memory and the journal stay bounded when the database falls behind."""
    import asyncio

    from runapi.accounting import SettlementWriter

    account, _ = gateway.create_account("1")
    database = gateway.settings.database_url.split("///", 1)[1]
    sink = SqliteSettlementSink(database)
    writer = SettlementWriter(sink, max_backlog=3,
                              journal=SettlementJournal(tmp_path / "journal"))
    writer.start()
    lock = sqlite3.connect(database, isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN IMMEDIATE")  # the writer cannot commit
        for n in range(1, 4):
            await asyncio.wait_for(writer.submit(_settlement(account, n, 1000), None), 1.0)  # journaled: at once
        assert writer.pending == 3
        fourth = asyncio.ensure_future(writer.submit(_settlement(account, 4, 1000), None))
        await asyncio.sleep(0.5)
        assert not fourth.done()  # over the backlog: waits for its commit
        lock.execute("ROLLBACK")
        await asyncio.wait_for(fourth, 30)
        await writer.flush()
        assert writer.pending == 0
    finally:
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
        await writer.close()
        await sink.close()
    charges = [e for e in gateway.ledger(account) if e["kind"] == "charge"]
    assert sorted(e["generation_id"] for e in charges) == [f"gen-journal-{account[-8:]}-{n}" for n in range(1, 5)]


async def test_journaled_settlements_linger_to_share_a_commit_until_someone_waits(gateway: RunningGateway,
                                                                                  tmp_path: Path) -> None:
    """Journaled settlements are durable already, so the writer waits up to `linger` to commit several
    in one transaction; a `flush` (a report reading its own writes) ends the wait at once."""
    import asyncio

    from runapi.accounting import SettlementWriter

    class CountingSink:  # the real SQLite sink, with the size of each batch it commits noted
        def __init__(self, sink: SqliteSettlementSink) -> None:
            self.sink, self.batches = sink, []

        async def record(self, batch: list[Settlement]) -> dict[str, int]:
            self.batches.append(len(batch))
            return await self.sink.record(batch)

    account, _ = gateway.create_account("1")
    sink = CountingSink(SqliteSettlementSink(gateway.settings.database_url.split("///", 1)[1]))
    writer = SettlementWriter(sink, journal=SettlementJournal(tmp_path / "journal"),  # type: ignore[arg-type]
                              linger=60.0)
    writer.start()
    try:
        for n in range(1, 6):
            await asyncio.wait_for(writer.submit(_settlement(account, n, 1000), None), 1.0)
            await asyncio.sleep(0.01)
        assert sink.batches == [] and writer.pending == 5  # lingering: nothing committed yet
        await asyncio.wait_for(writer.flush(), 5.0)  # far sooner than the 60 s linger
        assert sink.batches == [5] and writer.pending == 0
    finally:
        await writer.close()
        await sink.sink.close()
    charges = [e for e in gateway.ledger(account) if e["kind"] == "charge"]
    assert len(charges) == 5


async def test_a_journaled_calls_bookkeeping_follows_its_answer_and_precedes_its_commit(gateway: RunningGateway,
                                                                                       tmp_path: Path) -> None:
    """`submit` returns as soon as the settlement is journaled, and the answer goes out in that task step;
    the reservation's shrink to the charge and the observers run right after it, before the writer
    can commit the settlement and close the reservation, even when a `flush` hurries the commit."""
    import asyncio

    from runapi.accounting import SettlementWriter
    from runapi.accounting.credit import MemoryCreditGuard
    from runapi.limits import build_tiers, create_limit_control
    from runapi.pipeline.auth import Principal
    from runapi.pipeline.reservation import Reservation
    from runapi.storage import Ledger

    account, _ = gateway.create_account("1")  # $1 = 10^9 nano-dollars
    guard = MemoryCreditGuard(Ledger(gateway.gateway.engine))
    limits = create_limit_control(build_tiers({}), gateway.gateway.engine)
    sink = SqliteSettlementSink(gateway.settings.database_url.split("///", 1)[1])
    events: list[tuple[str, str]] = []

    writer = SettlementWriter(sink, journal=SettlementJournal(tmp_path / "journal"), linger=60.0,
                              observers=[lambda s: events.append(("durable", s.generation.id))])
    writer.start()
    try:
        reservation = await Reservation.open(guard, limits, Principal("key_j", account, "tier-5"), "glm-4.5-air",
                                             prompt_tokens=10, output_tokens=10, max_cost_nanos=300_000)
        hold = reservation.hold
        settlement = _settlement(account, 1, 1000)
        await writer.submit(settlement, reservation)
        assert events == [] and hold.amount == 300_000  # not yet: the caller answers first
        flushing = asyncio.ensure_future(writer.flush())  # hurries the commit into the next loop turns
        await asyncio.sleep(0)
        assert events == [("durable", settlement.generation.id)] and hold.amount == 1000 and hold.open
        assert settlement.ledger_id is None  # durable, not committed
        await asyncio.wait_for(flushing, 5.0)
        assert events == [("durable", settlement.generation.id)] and (settlement.ledger_id or 0) > 0
        assert not hold.open and await guard.available(account) == 10**9 - 1000  # charged once, the hold closed
    finally:
        await writer.close()
        await sink.close()
