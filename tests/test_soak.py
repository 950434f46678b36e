"""A bounded soak: mixed load with injected faults on loopback, then the money invariants and memory.

`RUNAPI_SOAK_SECONDS` sets the duration (default 10 s in CI; run e.g. 300 locally). Traffic: JSON
and SSE calls, upstream 500s, streams cut by the upstream, mid-stream error events, malformed
upstream JSON, clients hanging up mid-stream, bad keys and bad bodies, across a few accounts at
once. Afterwards, per account: the balance is the ledger's sum and never negative; every succeeded
or cancelled generation is charged exactly once, at its recorded cost; no failed generation is
charged; no charge lacks its generation. The process's RSS growth over the second half is bounded.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx

from runapi.http import create_app
from runapi.http.server_protocol import guarded_protocol
from runapi.storage import upgrade
from tests.support.gateway import (
    RunningGateway,
    gateway_settings,
    run_gateway,
    simulator_config,
    sqlite_url,
)
from tests.support.servers import serve_asgi

SECONDS = float(os.environ.get("RUNAPI_SOAK_SECONDS", "10"))
CONCURRENCY = 8
MESSAGES = [{"role": "user", "content": "soak test, tell me something"}]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one_call(client: httpx.AsyncClient, rng: random.Random, keys: list[str]) -> str:
    key = rng.choice(keys)
    kind = rng.choices(["json", "stream", "500", "cut", "error_event", "bad_json", "hangup", "bad_key", "bad_body"],
                       weights=[30, 25, 8, 8, 6, 5, 8, 5, 5])[0]
    headers = {"authorization": f"Bearer {key}"}
    body: dict[str, object] = {"model": "glm-4.5-air", "messages": MESSAGES,
                               "x_sim": {"completion_tokens": rng.randint(1, 30)}}
    if kind == "bad_key":
        headers = {"authorization": "Bearer rk-not-a-key"}
    if kind == "bad_body":
        response = await client.post("/v1/chat/completions", headers=headers, content=b'{"model": 1')
        return f"bad_body:{response.status_code}"
    if kind in ("500", "cut", "error_event", "bad_json"):
        body["x_sim"] = {"fault": kind}
    stream = kind in ("stream", "cut", "error_event", "hangup") or (kind == "bad_json" and rng.random() < 0.5)
    if not stream:
        response = await client.post("/v1/chat/completions", headers=headers, json=body)
        return f"{kind}:{response.status_code}"
    body["stream"] = True
    if kind == "hangup":
        body["x_sim"] = {"completion_tokens": 40, "chunk_delay_ms": 10}
    async with client.stream("POST", "/v1/chat/completions", headers=headers, json=body) as response:
        async for line in response.aiter_lines():
            if kind == "hangup" and '"content":"' in line and rng.random() < 0.3:
                break  # the client leaves mid-stream
    return f"{kind}:{response.status_code}"


async def drive(gw: RunningGateway, keys: list[str], seconds: float, samples: list[float]) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    half = time.monotonic() + seconds / 2
    async with httpx.AsyncClient(base_url=gw.base_url, timeout=30) as client:
        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < deadline:
                outcomes[await one_call(client, rng, keys)] += 1

        async def sampler() -> None:
            while time.monotonic() < deadline:
                if time.monotonic() >= half and len(samples) == 0:
                    samples.append(rss_mb())
                await asyncio.sleep(0.25)
            samples.append(rss_mb())

        await asyncio.gather(sampler(), *(worker(seed) for seed in range(CONCURRENCY)))
    return outcomes


def settled_generations(gw: RunningGateway, account: str, expected_at_least: int) -> list[dict]:  # type: ignore[type-arg]
    """The account's generation rows, once writing has caught up (rows land after the answer)."""
    deadline = time.monotonic() + 10
    while True:
        rows = gw.admin.get("/admin/generations", params={"account_id": account, "limit": 1000}).json()["data"]
        if len(rows) >= expected_at_least or time.monotonic() > deadline:
            return list(rows)
        time.sleep(0.1)


def test_soak_mixed_load_with_faults_keeps_the_books(sim_url: str, tmp_path: Path) -> None:
    # The brute-force guard is off here (its own test is in test_security.py): bad keys are part of the mix.
    with run_gateway(sqlite_url(tmp_path), sim_url, circuit_failures=0, max_attempts=1,
                     auth_failures_per_minute=0) as gw:
        accounts = [gw.create_account("5") for _ in range(max(6, int(SECONDS / 2)))]
        keys = [key for _, key in accounts]
        samples: list[float] = []
        outcomes = asyncio.run(drive(gw, keys, SECONDS, samples))
        total = sum(outcomes.values())
        assert total > 50, outcomes
        assert not any(o.endswith(":500") for o in outcomes), outcomes  # never an internal error
        assert outcomes["bad_key:401"] == sum(n for o, n in outcomes.items() if o.startswith("bad_key"))
        assert outcomes["bad_body:400"] == sum(n for o, n in outcomes.items() if o.startswith("bad_body"))
        # No wait for the last settlements: every admin read below flushes the writer first (read-your-writes).
        expected_calls = total - sum(n for o, n in outcomes.items() if o.startswith(("bad_key", "bad_body")))
        seen = 0
        statuses: Counter[str] = Counter()
        for account, _ in accounts:
            ledger = gw.ledger(account)
            balance = gw.balance(account)
            assert balance == gw.ledger_sum(account) and balance >= 0
            rows = {row["id"]: row for row in settled_generations(gw, account, 1)}
            assert len(rows) < 1000, "more calls per account than one listing shows: add accounts"
            seen += len(rows)
            charges = Counter(e["generation_id"] for e in ledger if e["kind"] == "charge")
            assert all(n == 1 for n in charges.values()), "a generation charged twice"
            assert set(charges) <= set(rows), "a charge without its generation row"
            for gen_id, row in rows.items():
                statuses[row["status"]] += 1
                if row["status"] == "failed":
                    assert gen_id not in charges, f"failed generation {gen_id} was charged"
                elif row["status"] == "succeeded":
                    assert gen_id in charges, f"succeeded generation {gen_id} was not charged"
                if gen_id in charges:
                    amount = next(Decimal(str(e["amount"])) for e in ledger if e["generation_id"] == gen_id)
                    assert -amount == Decimal(str(row["cost"]))
        # Every call that reached the pipeline left one generation row (a 402/429 before the upstream leaves none).
        assert seen <= expected_calls
        assert statuses["succeeded"] > 0 and statuses["failed"] > 0, statuses
        growth = samples[-1] - samples[0]
        print(f"soak: {total} calls in {SECONDS:.0f}s, {dict(statuses)}, RSS {samples[0]:.1f} -> {samples[-1]:.1f} MB")
        assert growth < 40, f"RSS grew {growth:.1f} MB in the second half of the soak"


def test_the_serve_process_freezes_what_start_up_made(sim_url: str, tmp_path: Path) -> None:
    """`runapi serve`'s app (`freeze_gc`) moves start-up objects out of the collector's sight once started, so
    a full collection walks only what requests made; an app built for tests (no `freeze_gc`) leaves the
    collector alone."""
    database_url = sqlite_url(tmp_path)
    upgrade(database_url)
    settings = gateway_settings(database_url, simulator_config(sim_url))
    with serve_asgi(create_app(settings), http=guarded_protocol(settings.server)):
        assert gc.get_freeze_count() == 0
    try:
        with serve_asgi(create_app(settings, freeze_gc=True), http=guarded_protocol(settings.server)) as base_url:
            assert gc.get_freeze_count() > 10_000  # modules, catalog, pools
            assert httpx.get(f"{base_url}/health", timeout=10).status_code == 200
    finally:
        gc.unfreeze()  # the test process's own objects back to the collector
