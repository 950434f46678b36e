"""Video tasks survive a SIGKILL of the gateway mid-poll: after a restart the job is polled again (never
submitted twice), delivered, and charged exactly once; a task killed between its submission and the
recording of the provider's job ID ("submitted-unknown") is failed free, never submitted again."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import msgspec
import pytest
import sqlalchemy as sa

from runapi.catalog import builtin_catalog_data
from runapi.clock import utcnow
from runapi.simulator import SimulatorConfig, create_simulator_app
from runapi.simulator.media_routes import SAMPLE_MP4
from runapi.storage import create_engine, upgrade
from runapi.storage.schema import tasks
from runapi.tasks.video_store import VideoJobStore, video_generation_id
from tests.support.gateway import ADMIN_TOKEN
from tests.support.servers import free_port, serve_asgi
from tests.support.tasks import client
from tests.test_tasks_crash import serve_process
from tests.test_videos import PRICE, _gateway, kinds, sim_submissions, wait_video


@pytest.fixture()
def slow_sim() -> Iterator[str]:
    """A simulator whose video jobs take 3 s: long enough to kill the gateway while one is PROCESSING."""
    with serve_asgi(create_simulator_app(SimulatorConfig(video_delay_ms=3000))) as url:
        yield url


def write_config(path: Path, sim_url: str, media_dir: Path) -> Path:
    lines = []
    for name, spec in builtin_catalog_data()["providers"].items():
        base = f"{sim_url}/v1" if spec["protocol"] == "openai" else sim_url
        if name == "zai":
            base = f"{sim_url}/api/paas/v4"
        lines += [f"[providers.{name}]", f'base_url = "{base}"', 'api_key_env = ""', ""]
    lines += ["[tasks]", "lease = 1.0", "poll_interval = 0.05", "video_poll_initial = 0.1", "video_poll_max = 0.3",
              "", "[media]", f'url = "{media_dir}"', 'download_allow = ["127.0.0.1"]']
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sigkill_mid_poll_resumes_submits_once_and_charges_once(database_url: str, slow_sim: str,
                                                                tmp_path: Path) -> None:
    upgrade(database_url)
    env = {**os.environ, "RUNAPI_DATABASE_URL": database_url, "RUNAPI_ADMIN_TOKEN": ADMIN_TOKEN,
           "RUNAPI_CONFIG": str(write_config(tmp_path / "runapi.toml", slow_sim, tmp_path / "media"))}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        with serve_process(env, port) as first:
            account = admin.post("/admin/accounts", json={"name": "video-crash"}).raise_for_status().json()["id"]
            admin.post(f"/admin/accounts/{account}/credits", json={"amount_usd": "1"}).raise_for_status()
            key = admin.post(f"/admin/accounts/{account}/keys", json={}).raise_for_status().json()["key"]
            http = httpx.Client(base_url=base, headers={"authorization": f"Bearer {key}"}, timeout=30)
            video_id = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "a long take"}
                                 ).raise_for_status().json()["id"]
            wait_video(http, video_id, "in_progress")  # submitted; the job is PROCESSING for 3 s
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        assert sim_submissions(slow_sim) == 1

        with serve_process(env, port):
            done = wait_video(http, video_id, "completed", timeout=60)
            content = http.get(f"/v1/videos/{video_id}/content")
            ledger = admin.get(f"/admin/accounts/{account}/ledger").raise_for_status().json()["data"]
            balance = Decimal(str(admin.get(f"/admin/accounts/{account}").json()["balance"]))
        http.close()

    assert done["progress"] == 100 and content.content == SAMPLE_MP4
    assert sim_submissions(slow_sim) == 1  # resumed by polling, never submitted again
    assert [(e["kind"], Decimal(str(e["amount"]))) for e in ledger] == [
        ("topup", Decimal(1)), ("hold", -PRICE), ("release", PRICE), ("charge", -PRICE)]
    assert [e["generation_id"] for e in ledger if e["kind"] == "charge"] == [video_generation_id(video_id)]
    assert balance == sum(Decimal(str(e["amount"])) for e in ledger) == Decimal(1) - PRICE


def test_a_task_killed_while_submitting_is_failed_free_never_resubmitted(sim_url: str, tmp_path: Path) -> None:
    with _gateway(tmp_path, sim_url) as gw:
        account, key = gw.create_account("1")
        key_id = gw.admin.get(f"/admin/accounts/{account}/keys").json()["data"][0]["id"]
        task_id = "task_" + "5e" * 12
        before = sim_submissions(sim_url)

        async def crashed_while_submitting() -> None:
            """The database as a worker SIGKILLed after marking the job `submitting` leaves it."""
            engine = create_engine(gw.settings.database_url)
            now = utcnow()
            try:
                await VideoJobStore(engine).create({
                    "id": task_id, "account_id": account, "key_id": key_id, "model": "cogvideox-3",
                    "endpoint": "videos", "request": msgspec.json.encode({"prompt": "lost", "duration": 5}).decode(),
                    "status": "running", "runs": 1, "run_after": now, "created_at": now, "origin": gw.base_url,
                    "generation_id": video_generation_id(task_id), "price_nanos": 200_000_000, "units": 1,
                    "deadline_at": now + timedelta(seconds=60), "worker": "killed-worker",
                    "locked_until": now - timedelta(seconds=1)}, 200_000_000)
                async with engine.begin() as conn:
                    await conn.execute(sa.update(tasks).where(tasks.c.id == task_id).values(
                        upstream_state="submitting", provider_name="zai", upstream_model="cogvideox-3"))
            finally:
                await engine.dispose()

        asyncio.run(crashed_while_submitting())
        with client(gw, key) as http:
            failed = wait_video(http, task_id, "failed")
        assert failed["error"]["code"] == "submission_unknown"
        assert sim_submissions(sim_url) == before  # not submitted again
        assert kinds(gw, account) == [("topup", Decimal(1)), ("hold", -PRICE), ("release", PRICE)]
        assert gw.balance(account) == Decimal(1)
