"""`Idempotency-Key` on `POST /v1/chat/completions` and `POST /v1/tasks`: replayed, charged once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from runapi.money import Usage, cost_nanos
from runapi.simulator import prompt_tokens
from runapi.storage import Generation, Ledger, Settlement, create_engine
from runapi.storage.clock import utcnow
from runapi.storage.schema import idempotency_keys
from runapi.tasks.idempotency import STALE_AFTER_S, fingerprint
from tests.support.gateway import RunningGateway, sqlite_url
from tests.support.tasks import (
    MESSAGES,
    chat_task,
    client,
    run_task_gateway,
    wait_finished,
)

AIR_COST = (prompt_tokens(MESSAGES) * Decimal("0.10") + 12 * Decimal("0.55")) / Decimal(1_000_000)
CHAT = {"model": "glm-4.5-air", "messages": MESSAGES}


@pytest.fixture(scope="module")
def gw(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with run_task_gateway(sqlite_url(tmp_path_factory.mktemp("idempotency")), sim_url) as running:
        yield running


def charges(gw: RunningGateway, account: str) -> list[str]:
    return [e["generation_id"] for e in gw.ledger(account) if e["kind"] == "charge"]


def test_chat_retry_with_the_same_key_is_replayed_and_charged_once(gw: RunningGateway, sim: httpx.Client) -> None:
    account, key = gw.create_account("1")
    before = sim.get("/_sim/stats").json()["requests"]
    with client(gw, key) as http:
        first = http.post("/v1/chat/completions", json=CHAT, headers={"idempotency-key": "order-1"})
        # The same body with its keys in another order is the same request.
        second = http.post("/v1/chat/completions", json=dict(reversed(CHAT.items())),
                           headers={"idempotency-key": "order-1"})
        other_body = http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 5},
                               headers={"idempotency-key": "order-1"})
        no_key = http.post("/v1/chat/completions", json=CHAT)
    assert first.status_code == second.status_code == 200
    assert second.content == first.content and second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert second.headers["x-runapi-generation-id"] == first.json()["id"]
    assert other_body.status_code == 409 and other_body.json()["error"]["code"] == "idempotency_key_reused"
    assert sim.get("/_sim/stats").json()["requests"] - before == 2  # the first call and the one without a key
    assert charges(gw, account) == [first.json()["id"], no_key.json()["id"]]
    assert gw.balance(account) == Decimal(1) - 2 * AIR_COST


def test_keys_are_scoped_to_the_account(gw: RunningGateway) -> None:
    account_a, key_a = gw.create_account("1")
    account_b, key_b = gw.create_account("1")
    with client(gw, key_a) as a, client(gw, key_b) as b:
        first = a.post("/v1/chat/completions", json=CHAT, headers={"idempotency-key": "shared"})
        other = b.post("/v1/chat/completions", json=CHAT, headers={"idempotency-key": "shared"})
    assert first.status_code == other.status_code == 200 and first.json()["id"] != other.json()["id"]
    assert len(charges(gw, account_a)) == len(charges(gw, account_b)) == 1


def test_a_failed_call_is_not_kept(gw: RunningGateway, sim: httpx.Client) -> None:
    account, key = gw.create_account("1")
    sim.post("/_sim/faults", json={"faults": ["500"] * gw.settings.server.max_attempts}).raise_for_status()
    with client(gw, key) as http:
        failed = http.post("/v1/chat/completions", json=CHAT, headers={"idempotency-key": "retry-me"})
        retried = http.post("/v1/chat/completions", json=CHAT, headers={"idempotency-key": "retry-me"})
        replayed = http.post("/v1/chat/completions", json=CHAT, headers={"idempotency-key": "retry-me"})
    assert failed.status_code >= 500
    assert retried.status_code == 200 and "idempotent-replayed" not in retried.headers
    assert replayed.content == retried.content
    assert charges(gw, account) == [retried.json()["id"]]


def test_concurrent_requests_with_one_key_run_once(gw: RunningGateway) -> None:
    account, key = gw.create_account("1")
    body = {**CHAT, "x_sim": {"latency_ms": 400}}

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gw.base_url, timeout=30,
                                     headers={"authorization": f"Bearer {key}", "idempotency-key": "race"}) as http:
            return list(await asyncio.gather(*(http.post("/v1/chat/completions", json=body) for _ in range(2))))

    statuses = sorted(r.status_code for r in asyncio.run(both()))
    assert statuses == [200, 409]
    assert len(charges(gw, account)) == 1


def test_bad_idempotency_key_is_refused(gw: RunningGateway) -> None:
    _, key = gw.create_account("1")
    with client(gw, key) as http:
        response = http.post("/v1/chat/completions", json=CHAT, headers={"idempotency-key": "x" * 256})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_idempotency_key"


def test_task_retry_with_the_same_key_is_the_same_task(gw: RunningGateway) -> None:
    account, key = gw.create_account("1")
    with client(gw, key) as http:
        first = http.post("/v1/tasks", json=chat_task(), headers={"idempotency-key": "job-1"})
        second = http.post("/v1/tasks", json=chat_task(), headers={"idempotency-key": "job-1"})
        conflict = http.post("/v1/tasks", json=chat_task(metadata={"n": "2"}), headers={"idempotency-key": "job-1"})
        assert first.status_code == second.status_code == 202
        assert second.json()["id"] == first.json()["id"] and second.headers["idempotent-replayed"] == "true"
        assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_key_reused"
        done = wait_finished(http, first.json()["id"])
        third = http.post("/v1/tasks", json=chat_task(), headers={"idempotency-key": "job-1"})
        assert third.json()["id"] == done["id"] and third.json()["status"] == "succeeded"
        assert [t["id"] for t in http.get("/v1/tasks").json()["data"]] == [done["id"]]
    assert charges(gw, account) == [done["generation_id"]]
    assert gw.balance(account) == Decimal(1) - AIR_COST


def test_retry_after_a_crash_that_lost_a_charged_answer_is_not_charged_again(gw: RunningGateway) -> None:
    """The first attempt was charged, then the process died before storing its answer: once the key is
    taken over, the retry runs under the same generation ID and the ledger keeps one charge."""
    account, key = gw.create_account("1")
    key_id = gw.admin.get(f"/admin/accounts/{account}/keys").json()["data"][0]["id"]
    stem = "gen-" + "9f" * 12
    long_ago = utcnow() - timedelta(seconds=STALE_AFTER_S + 60)
    usage = Usage(input_tokens=prompt_tokens(MESSAGES), output_tokens=12)
    entry = gw.settings.catalog.resolve("glm-4.5-air")
    assert entry is not None
    cost = cost_nanos(usage, entry.pricing)

    async def crashed_attempt() -> None:
        engine = create_engine(gw.settings.database_url)
        try:
            row = Generation(id=f"{stem}-1", account_id=account, key_id=key_id, model=entry.id, provider="zai",
                             upstream_model=entry.id, status="succeeded", stream=False,
                             input_tokens=usage.input_tokens, output_tokens=12, cache_read_tokens=0,
                             cache_write_tokens=0, reasoning_tokens=0, price_input="0.10", price_output="0.55",
                             price_cache_read="0.02", price_cache_write="0", cost_nanos=cost, estimated=False,
                             latency_ms=1.0, created_at=long_ago)
            await Ledger(engine).record([Settlement(row, cost)])
            async with engine.begin() as conn:
                await conn.execute(idempotency_keys.insert().values(
                    account_id=account, key="lost", fingerprint=fingerprint("/v1/chat/completions", CHAT),
                    status="pending", resource_id=stem, created_at=long_ago, expires_at=utcnow() + timedelta(hours=1)))
        finally:
            await engine.dispose()

    asyncio.run(crashed_attempt())
    with client(gw, key) as http:
        retried = http.post("/v1/chat/completions", json=CHAT, headers={"idempotency-key": "lost"})
        replayed = http.post("/v1/chat/completions", json=CHAT, headers={"idempotency-key": "lost"})
    assert retried.status_code == 200 and retried.json()["id"] == f"{stem}-1"
    assert replayed.content == retried.content
    assert charges(gw, account) == [f"{stem}-1"]
    assert gw.balance(account) == Decimal(1) - AIR_COST
