"""Tasks survive a SIGKILL of the gateway, re-run exactly as needed, and are never charged twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import msgspec

from runapi.catalog import builtin_catalog_data
from runapi.config import load_settings
from runapi.money import Usage, cost_nanos
from runapi.simulator import prompt_tokens
from runapi.storage import (
    AccountStore,
    Generation,
    Ledger,
    Settlement,
    create_engine,
    upgrade,
)
from runapi.storage.clock import utcnow
from runapi.storage.schema import tasks
from runapi.tasks import TaskStore, run_generation_id
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, sqlite_url
from tests.support.servers import free_port
from tests.support.tasks import (
    MESSAGES,
    Receiver,
    chat_task,
    client,
    fast_tasks,
    run_task_gateway,
    serve_receiver,
    wait_finished,
    wait_for,
)

AIR_COST = (prompt_tokens(MESSAGES) * Decimal("0.10") + 12 * Decimal("0.55")) / Decimal(1_000_000)


def write_config(path: Path, sim_url: str) -> Path:
    lines = []
    for name, spec in builtin_catalog_data()["providers"].items():
        base = f"{sim_url}/v1" if spec["protocol"] == "openai" else sim_url
        lines += [f"[providers.{name}]", f'base_url = "{base}"', 'api_key_env = ""', ""]
    lines += ["[tasks]", "workers = 3", "lease = 1.0", "poll_interval = 0.05", "webhook_backoff = 0.05",
              "webhook_backoff_max = 0.2", 'webhook_allow = ["127.0.0.1"]']
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def serve_process(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`runapi serve` as a child process, up and answering /health."""
    process = subprocess.Popen([sys.executable, "-m", "runapi.cli.main", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def healthy() -> bool:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, 30, 0.1)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)
        if process.stderr:
            process.stderr.close()


def test_sigkill_while_tasks_queued_and_running(sim_url: str, tmp_path: Path) -> None:
    database_url = sqlite_url(tmp_path)
    upgrade(database_url)
    env = {**os.environ, "RUNAPI_DATABASE_URL": database_url, "RUNAPI_ADMIN_TOKEN": ADMIN_TOKEN,
           "RUNAPI_CONFIG": str(write_config(tmp_path / "runapi.toml", sim_url))}
    receiver = Receiver()
    with serve_receiver(receiver) as hook:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with serve_process(env, port) as first:
            admin = httpx.Client(base_url=base, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
            # tier-1: 20 concurrent calls, so all three workers' calls are in flight when the process is killed
            account = admin.post("/admin/accounts", json={"name": "crash", "tier": "tier-1"}).raise_for_status().json()["id"]
            admin.post(f"/admin/accounts/{account}/credits", json={"amount_usd": "1"}).raise_for_status()
            key = admin.post(f"/admin/accounts/{account}/keys", json={}).raise_for_status().json()["key"]
            http = httpx.Client(base_url=base, headers={"authorization": f"Bearer {key}"})
            ids = [http.post("/v1/tasks", json=chat_task(callback_url=hook, x_sim={"latency_ms": 1200}))
                   .raise_for_status().json()["id"] for _ in range(9)]
            statuses = wait_for(lambda: (s := Counter(http.get(f"/v1/tasks/{i}").json()["status"] for i in ids))
                                ["running"] == 3 and s)
            assert statuses == {"running": 3, "queued": 6}
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        assert receiver.requests == []

        with serve_process(env, port):
            finished = [wait_finished(http, task_id, timeout=60) for task_id in ids]
            wait_for(lambda: all(receiver.for_task(i) for i in ids), 10)
            ledger = admin.get(f"/admin/accounts/{account}/ledger").json()["data"]
            generations = admin.get("/admin/generations", params={"account_id": account}).json()["data"]
            balance = Decimal(str(admin.get(f"/admin/accounts/{account}").json()["balance"]))
        http.close()
        admin.close()

    assert [t["status"] for t in finished] == ["succeeded"] * 9
    assert sorted(t["runs"] for t in finished) == [1] * 6 + [2] * 3  # the 3 killed mid-call ran again
    charged = [e["generation_id"] for e in ledger if e["kind"] == "charge"]
    assert sorted(charged) == sorted(t["generation_id"] for t in finished)  # each task charged exactly once
    assert Counter(g["client_request_id"] for g in generations) == Counter(ids)  # one generation per task
    assert balance == Decimal(1) - 9 * AIR_COST
    for task_id in ids:  # exactly one event per task (a receiver dedupes retries by webhook-id)
        assert len({headers["webhook-id"] for headers, _ in receiver.for_task(task_id)}) == 1


def _charged_run(database_url: str, account: str, key_id: str, task_id: str, runs: int,
                 request: dict | None = None, charge: bool = True) -> int:  # type: ignore[type-arg]
    """Leave the database as a worker killed after run 1 was charged but before it recorded the task."""
    settings = load_settings({"RUNAPI_DATABASE_URL": database_url})
    entry = settings.catalog.resolve("glm-4.5-air")
    assert entry is not None
    usage = Usage(input_tokens=prompt_tokens(MESSAGES), output_tokens=12)
    cost = cost_nanos(usage, entry.pricing)
    now = utcnow()

    async def write() -> None:
        engine = create_engine(database_url)
        try:
            if charge:
                row = Generation(
                    id=run_generation_id(task_id, 1), account_id=account, key_id=key_id, model=entry.id,
                    provider="zai", upstream_model=entry.id, status="succeeded", stream=False,
                    input_tokens=usage.input_tokens, output_tokens=12, cache_read_tokens=0, cache_write_tokens=0,
                    reasoning_tokens=0, price_input="0.10", price_output="0.55", price_cache_read="0.02",
                    price_cache_write="0", cost_nanos=cost, estimated=False, latency_ms=1.0, created_at=now,
                    client_request_id=task_id)
                await Ledger(engine).record([Settlement(row, cost)])
            async with engine.begin() as conn:
                await conn.execute(tasks.insert().values(
                    id=task_id, account_id=account, key_id=key_id, model=entry.id, endpoint="chat.completions",
                    request=msgspec.json.encode(request or {"model": "glm-4.5-air", "messages": MESSAGES}).decode(),
                    status="running", runs=runs, run_after=now, locked_until=now - timedelta(seconds=1),
                    worker="killed-worker", generation_id=run_generation_id(task_id, 1), created_at=now,
                    started_at=now))
        finally:
            await engine.dispose()

    asyncio.run(write())
    return cost


def _key_id(gw: RunningGateway, account: str) -> str:
    return str(gw.admin.get(f"/admin/accounts/{account}/keys").json()["data"][0]["id"])


def test_rerun_after_a_charged_run_is_not_charged_again(sim_url: str, tmp_path: Path, sim: httpx.Client) -> None:
    with run_task_gateway(sqlite_url(tmp_path), sim_url, fast_tasks()) as gw:
        account, key = gw.create_account("1")
        task_id = "task_" + "ab" * 12
        cost = _charged_run(gw.settings.database_url, account, _key_id(gw, account), task_id, runs=1)
        before = sim.get("/_sim/stats").json()["requests"]
        with client(gw, key) as http:
            done = wait_finished(http, task_id)
        assert done["status"] == "succeeded" and done["runs"] == 2 and done["result"] is not None
        assert done["generation_id"] == run_generation_id(task_id, 1)  # the charged run's ID, reused
        assert sim.get("/_sim/stats").json()["requests"] - before == 1  # the output was lost: run again...
        charges = [e for e in gw.ledger(account) if e["kind"] == "charge"]
        assert [e["generation_id"] for e in charges] == [done["generation_id"]]  # ...but charged once
        assert gw.balance(account) == Decimal(1) - Decimal(cost) / 10**9 == Decimal(1) - Decimal(str(done["cost"]))


def test_charged_run_whose_rerun_fails_is_refunded(sim_url: str, tmp_path: Path) -> None:
    with run_task_gateway(sqlite_url(tmp_path), sim_url, fast_tasks()) as gw:
        account, key = gw.create_account("1")
        task_id = "task_" + "cd" * 12
        _charged_run(gw.settings.database_url, account, _key_id(gw, account), task_id, runs=1,
                     request={"model": "glm-4.5-air", "messages": MESSAGES, "x_sim": {"fault": "500"}})
        with client(gw, key) as http:
            done = wait_finished(http, task_id)
        assert done["status"] == "failed" and Decimal(str(done["cost"])) == 0
        assert [e["kind"] for e in gw.ledger(account)] == ["topup", "charge", "refund"]
        assert gw.balance(account) == Decimal(1)


def test_task_interrupted_too_often_is_failed(sim_url: str, tmp_path: Path) -> None:
    with run_task_gateway(sqlite_url(tmp_path), sim_url, fast_tasks(max_runs=3)) as gw:
        account, key = gw.create_account("1")
        task_id = "task_" + "ef" * 12
        _charged_run(gw.settings.database_url, account, _key_id(gw, account), task_id, runs=3, charge=False)
        with client(gw, key) as http:
            done = wait_finished(http, task_id)
        assert done["status"] == "failed" and done["error"]["code"] == "task_interrupted" and done["runs"] == 4
        assert gw.balance(account) == Decimal(1)


def test_graceful_stop_hands_running_tasks_back(sim_url: str, tmp_path: Path) -> None:
    """A stopping gateway does not keep its claims: another one runs the task at once, not after the lease."""
    database_url = sqlite_url(tmp_path)
    settings = fast_tasks(workers=1, lease=60.0)
    with run_task_gateway(database_url, sim_url, settings) as first:
        account, key = first.create_account("1")
        with client(first, key) as http:
            task_id = http.post("/v1/tasks", json=chat_task(x_sim={"latency_ms": 1500})).json()["id"]
            wait_for(lambda: http.get(f"/v1/tasks/{task_id}").json()["status"] == "running")
    with run_task_gateway(database_url, sim_url, settings) as second, client(second, key) as http:
        done = wait_finished(http, task_id, timeout=10)
        assert done["status"] == "succeeded" and done["runs"] == 2
        assert [e["generation_id"] for e in second.ledger(account) if e["kind"] == "charge"] == [done["generation_id"]]
        assert done["generation_id"] == run_generation_id(task_id, 2)


def test_overlapping_runs_share_one_generation(database_url: str) -> None:
    """A worker that stalls past its lease and the worker that takes over run under one generation ID."""
    upgrade(database_url)

    async def scenario() -> tuple[str, str, str, bool]:
        engine = create_engine(database_url)
        try:
            store = TaskStore(engine)
            account = await AccountStore(engine).create_account("overlap")
            now = utcnow()
            await store.create({"id": "task_" + "12" * 12, "account_id": account.id, "key_id": "key_x",
                                "model": "glm-4.5-air", "endpoint": "chat.completions", "request": "{}",
                                "status": "queued", "runs": 0, "run_after": now, "created_at": now})
            stalled = await store.claim("stalled-worker", lease=0.05)
            assert stalled is not None
            first, _ = await store.generation_for_run(stalled)
            await asyncio.sleep(0.1)  # the lease lapses while the stalled worker is still calling upstream
            taken = await store.claim("other-worker", lease=30)
            assert taken is not None and taken.id == stalled.id and taken.runs == 2
            second, charged = await store.generation_for_run(taken)
            assert await store.renew(stalled.id, "stalled-worker", 30) == (False, False)
            return first, second, run_generation_id(stalled.id, 1), charged
        finally:
            await engine.dispose()

    first, second, expected, charged = asyncio.run(scenario())
    assert first == second == expected and charged is False
