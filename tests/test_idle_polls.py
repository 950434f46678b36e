"""Idle polls on SQLite: the pollers query only after a commit elsewhere or when something falls due.

The probe and the gate run on real SQLite files; the due times come from the real stores; the
end-to-end test runs two real gateways on one database file and counts the SQL statements the
idle one sends.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from runapi.storage import create_engine, upgrade
from runapi.storage.idle_gate import MAX_IDLE_S, ChangeProbe, IdleGate
from runapi.storage.schema import accounts, tasks, webhook_events
from runapi.tasks.store import TaskStore
from runapi.tasks.webhook_store import WebhookStore
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.tasks import (
    chat_task,
    client,
    fast_tasks,
    run_task_gateway,
    wait_finished,
)


@pytest.fixture()
def migrated(tmp_path: Path) -> str:
    """A migrated SQLite database of its own (migrating runs its own event loop: done outside the test's)."""
    url = sqlite_url(tmp_path)
    upgrade(url)
    return url


def _writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    return conn


def test_the_probe_moves_only_when_another_connection_commits(tmp_path: Path) -> None:
    writer = _writer(tmp_path / "probe.db")
    probe = ChangeProbe(str(tmp_path / "probe.db"))
    try:
        first = probe.version()
        assert first is not None and probe.version() == first
        writer.execute("SELECT * FROM t").fetchall()
        assert probe.version() == first  # reads move nothing
        writer.execute("INSERT INTO t VALUES (1)")
        second = probe.version()
        assert second is not None and second != first
        writer.execute("BEGIN")
        writer.execute("INSERT INTO t VALUES (2)")
        assert probe.version() == second  # not committed yet
        writer.execute("COMMIT")
        assert probe.version() not in (first, second)
    finally:
        probe.close()
        writer.close()
    assert ChangeProbe(None).version() is None  # not a SQLite file: cannot tell


def test_the_gate_opens_after_a_commit_a_due_time_or_the_safety_interval(tmp_path: Path) -> None:
    writer = _writer(tmp_path / "gate.db")
    probe = ChangeProbe(str(tmp_path / "gate.db"))
    now = [float(int(time.time()))]  # whole seconds: the due time below survives its trip through datetime
    gate = IdleGate(probe, clock=lambda: now[0])
    try:
        assert gate.watching and gate.begin()  # never polled: poll
        gate.idle()
        assert not gate.begin()  # nothing changed, nothing due
        now[0] += MAX_IDLE_S - 1
        assert not gate.begin()
        now[0] += 1
        assert gate.begin()  # the safety interval
        gate.idle(datetime.fromtimestamp(now[0] + 3, UTC))
        now[0] += 2.5
        assert not gate.begin()
        now[0] += 0.5
        assert gate.begin()  # the due time it was told
        gate.idle()
        writer.execute("INSERT INTO t VALUES (1)")
        assert gate.begin()  # a commit by another connection
        writer.execute("INSERT INTO t VALUES (2)")  # lands while that poll's query runs ...
        gate.idle()
        assert gate.begin()  # ... so the next poll queries again
        gate.idle()
        assert not gate.begin()
        gate.busy()
        assert gate.begin()  # the last query found work: look again
    finally:
        probe.close()
        writer.close()
    blind = IdleGate(ChangeProbe(None))
    blind.idle()
    assert not blind.watching and blind.begin()  # other databases: every poll queries


async def test_the_stores_say_when_the_next_row_falls_due(migrated: str) -> None:
    engine = create_engine(migrated)
    now = datetime.now(UTC).replace(microsecond=0)
    task = {"account_id": "acct", "key_id": "key", "model": "glm-4.5-air", "endpoint": "chat.completions",
            "request": "{}", "created_at": now, "locked_until": None}  # every row names every column
    event = {"task_id": "task", "account_id": "acct", "url": "http://127.0.0.1/hook", "event_type": "task.succeeded",
             "payload": "{}", "status": "pending", "created_at": now, "locked_until": None}
    try:
        task_store, webhook_store = TaskStore(engine), WebhookStore(engine)
        assert await task_store.next_due() is None and await webhook_store.next_due() is None
        async with engine.begin() as conn:
            await conn.execute(accounts.insert().values(id="acct", name="acct", created_at=now))
            await conn.execute(tasks.insert(), [
                {**task, "id": "t-done", "status": "succeeded", "run_after": now - timedelta(hours=1)},
                {**task, "id": "t-queued", "status": "queued", "run_after": now + timedelta(seconds=30)},
                {**task, "id": "t-running", "status": "running", "run_after": now,
                 "locked_until": now + timedelta(seconds=20)},
            ])
            await conn.execute(webhook_events.insert(), [
                {**event, "id": "e-sent", "status": "delivered", "next_attempt_at": now - timedelta(hours=1)},
                {**event, "id": "e-retry", "next_attempt_at": now + timedelta(seconds=50)},
                # due at once, but leased by a sender for 40 s: claimable when the lease lapses
                {**event, "id": "e-leased", "next_attempt_at": now, "locked_until": now + timedelta(seconds=40)},
            ])
        assert await task_store.next_due() == now + timedelta(seconds=20)  # the lease lapses first
        assert await webhook_store.next_due() == now + timedelta(seconds=40)
        async with engine.begin() as conn:
            await conn.execute(tasks.update().where(tasks.c.id == "t-running").values(status="succeeded"))
            await conn.execute(webhook_events.delete().where(webhook_events.c.id == "e-leased"))
        assert await task_store.next_due() == now + timedelta(seconds=30)
        assert await webhook_store.next_due() == now + timedelta(seconds=50)
    finally:
        await engine.dispose()


def test_an_idle_gateway_sends_no_query_and_still_runs_a_task_queued_by_another_instance(
        sim_url: str, tmp_path: Path) -> None:
    """Instance A polls every 0.1 s but, with nothing changing, sends no SQL at all; instance B (no task
    workers) queues a task, a commit A did not make and was not woken for, and A runs it."""
    url = sqlite_url(tmp_path)
    with run_task_gateway(url, sim_url, fast_tasks(poll_interval=0.1, purge_interval=3600.0),
                          server={"epoch_poll_interval": 0.1}) as a, \
            run_task_gateway(url, sim_url, fast_tasks(workers=0, purge_interval=3600.0)) as b:
        _, key = b.create_account("1")
        statements: list[str] = []
        lock = threading.Lock()

        def count(conn: object, cursor: object, statement: str, *rest: object) -> None:
            with lock:
                statements.append(statement)

        sa.event.listen(a.gateway.engine.sync_engine, "before_cursor_execute", count)
        try:
            a.wait_for_epoch()
            time.sleep(0.3)  # the pollers see the set-up's commits, then go quiet
            with lock:
                statements.clear()
            time.sleep(0.4)  # four polls of each of the three pollers
            with lock:
                idle = list(statements)
            assert idle == []
            with client(b, key) as http:
                task_id = http.post("/v1/tasks", json=chat_task()).raise_for_status().json()["id"]
                finished = wait_finished(http, task_id, timeout=10)
            assert finished["status"] == "succeeded" and finished["runs"] == 1
            with lock:
                assert any("UPDATE tasks" in s for s in statements)  # A claimed it
        finally:
            sa.event.remove(a.gateway.engine.sync_engine, "before_cursor_execute", count)


async def test_a_queued_task_that_falls_due_later_is_claimed_then_without_any_commit(migrated: str,
                                                                                     tmp_path: Path) -> None:
    """The worker's gate, as the worker drives it: after the idle query, no query until the task's
    `run_after`, then one claim at that time."""
    engine = create_engine(migrated)
    store = TaskStore(engine)
    probe = ChangeProbe(str(tmp_path / "runapi.db"))
    gate = IdleGate(probe)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(accounts.insert().values(id="acct", name="acct", created_at=now))
        await conn.execute(tasks.insert().values(
            id="t-later", account_id="acct", key_id="key", model="glm-4.5-air", endpoint="chat.completions",
            request="{}", status="queued", run_after=now + timedelta(seconds=1.0), created_at=now))
    started, queried = time.monotonic(), []
    try:
        while time.monotonic() - started < 3.0:
            if gate.begin():
                queried.append(time.monotonic() - started)
                task = await store.claim("worker-1", 30.0)
                if task is not None:
                    break
                gate.idle(await store.next_due())
            await asyncio.sleep(0.05)
    finally:
        probe.close()
        await engine.dispose()
    assert len(queried) == 2, queried  # the first look, then the claim when due
    assert 0.95 <= queried[1] <= 1.3 and task is not None and task.id == "t-later"


def test_a_key_revoked_on_one_instance_is_refused_by_another_through_the_cache_epoch(sim_url: str,
                                                                                     tmp_path: Path) -> None:
    """Without Redis, the cache epoch is the only way a change on one instance reaches another: the other
    instance's epoch poller (every 0.5 s, gated by the data version) must see the revocation's bump and
    empty its key cache, well before the cache's own 60 s expiry."""
    database_url = sqlite_url(tmp_path)
    with run_gateway(database_url, sim_url) as a, run_gateway(database_url, sim_url) as b:
        account, key = a.create_account("1")
        (key_id,) = [k["id"] for k in a.admin.get(f"/admin/accounts/{account}/keys").json()["data"]]
        b.wait_for_epoch()  # b's poller has seen the account's creation (which empties its cache)

        def status(gw: RunningGateway) -> int:
            return httpx.post(f"{gw.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                              json={"model": "glm-4.5-air", "messages": [{"role": "user", "content": "hi"}],
                                    "max_tokens": 4}, timeout=10).status_code

        assert status(b) == 200  # cached on b
        a.admin.delete(f"/admin/keys/{key_id}").raise_for_status()
        revoked = time.monotonic()
        assert status(a) == 401  # a applied its own change at once
        while status(b) == 200:
            assert time.monotonic() - revoked < 2.0, "b still accepts the revoked key after 2 s"
            time.sleep(0.05)
