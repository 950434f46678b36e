"""Faults with the ledger checked afterwards, beyond those tested elsewhere.

Already covered (not repeated here): upstream 500/429/stall before the first byte and failover
(tests/test_failover.py), a stream cut by the upstream and a mid-stream error event
(tests/test_billing.py), malformed JSON from the upstream (tests/test_errors.py), the database going
away mid-traffic (tests/test_scaleout_database.py), Redis down or restarted (tests/test_scaleout*.py),
SIGKILL with tasks running (tests/test_tasks_crash.py). Here: a TCP reset of the upstream connection
mid-stream, a broken SSE frame mid-stream, and the gateway SIGKILLed with streams in flight.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from runapi.storage import upgrade
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, run_gateway, sqlite_url
from tests.support.instances import (
    ServeProcess,
    admin_client,
    funded_account,
    write_config,
)
from tests.support.sse import decode, sse_data
from tests.support.tcp_proxy import tcp_proxy

MESSAGES = [{"role": "user", "content": "hello there"}]


def assert_books_balance(gw: RunningGateway, account: str, credit: str, charged: int) -> None:
    ledger = gw.ledger(account)
    charges = [e for e in ledger if e["kind"] == "charge"]
    assert len(charges) == charged
    assert len({e["generation_id"] for e in charges}) == len(charges)  # none twice
    assert gw.balance(account) == gw.ledger_sum(account) == Decimal(credit) + sum(
        (Decimal(str(e["amount"])) for e in charges), Decimal(0))


def test_upstream_connection_reset_mid_stream_is_free(sim_url: str, tmp_path: Path) -> None:
    with tcp_proxy(int(urlsplit(sim_url).port or 0)) as proxy, \
            run_gateway(sqlite_url(tmp_path), f"http://127.0.0.1:{proxy.port}", circuit_failures=0) as gw:
        account, key = gw.create_account("1")
        body = {"model": "glm-4.5-air", "messages": MESSAGES, "stream": True,
                "x_sim": {"chunk_delay_ms": 100, "completion_tokens": 30}}
        with httpx.stream("POST", f"{gw.base_url}/v1/chat/completions", json=body, timeout=30,
                          headers={"authorization": f"Bearer {key}"}) as response:
            assert response.status_code == 200
            text = ""
            chunks = response.iter_text()
            for chunk in chunks:
                text += chunk
                if '"content":"' in text and text.count("data: ") >= 3:
                    proxy.cut()  # RST both ways, mid-answer
                    proxy.restore()
                    break
            text += "".join(chunks)
        events = sse_data(text)
        assert "error" in decode(events[-1]) and "[DONE]" not in events
        generation = response.headers["x-runapi-generation-id"]
        deadline = time.monotonic() + 5  # the failed generation's row is written after the stream closed
        while True:
            rows = gw.admin.get("/admin/generations", params={"account_id": account}).json()["data"]
            if rows or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [(g["id"], g["status"]) for g in rows] == [(generation, "failed")]
        assert_books_balance(gw, account, "1", charged=0)
        # The path works again afterwards, and is charged once.
        assert httpx.post(f"{gw.base_url}/v1/chat/completions", json={"model": "glm-4.5-air", "messages": MESSAGES},
                          headers={"authorization": f"Bearer {key}"}, timeout=30).status_code == 200
        assert_books_balance(gw, account, "1", charged=1)


def test_broken_sse_frame_mid_stream_is_free(gateway: RunningGateway) -> None:
    account, key = gateway.create_account("1")
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": "glm-4.5-air", "messages": MESSAGES, "stream": True,
                                "x_sim": {"fault": "bad_json"}}, timeout=30)
    assert response.status_code in (200, 503)
    if response.status_code == 200:
        events = sse_data(response.text)
        assert "error" in decode(events[-1]) and "[DONE]" not in events
    else:
        assert response.json()["error"]["type"]
    assert_books_balance(gateway, account, "1", charged=0)


def test_gateway_sigkilled_mid_stream_charges_nothing_twice_and_frees_holds(sim_url: str, tmp_path: Path) -> None:
    """The rule: a call is charged only if its settlement committed before the process died. Holds live
    in process memory (or, with Redis, expire within 60 s), so after a restart the available credit is
    the ledger balance again; streams that were in flight are not charged."""
    database_url = sqlite_url(tmp_path)
    upgrade(database_url)
    env = {**os.environ, "RUNAPI_DATABASE_URL": database_url, "RUNAPI_ADMIN_TOKEN": ADMIN_TOKEN,
           "RUNAPI_CONFIG": str(write_config(tmp_path / "runapi.toml", sim_url, '\n[tiers.free]\n'
                                             'concurrent_requests = 100\nrequests_per_minute = 10000\n'
                                             'tokens_per_minute = 100000000\n'))}
    env.pop("RUNAPI_REDIS_URL", None)
    first = ServeProcess(env, tmp_path / "first.log")
    try:
        killed_mid_stream(first, env, tmp_path)
    finally:
        first.process.kill()
        first.stop()


def killed_mid_stream(first: ServeProcess, env: dict[str, str], tmp_path: Path) -> None:
    first.wait_ready()
    admin = admin_client(first.base_url)
    account, auth = funded_account(admin, "killed", "1")
    done = [httpx.post(f"{first.base_url}/v1/chat/completions", headers=auth, timeout=30,
                       json={"model": "glm-4.5-air", "messages": MESSAGES}).raise_for_status().json()["id"]
            for _ in range(3)]
    # Big holds: each stream reserves its max_tokens at the output price.
    body = {"model": "glm-4.5-air", "messages": MESSAGES, "stream": True, "max_tokens": 20_000,
            "x_sim": {"chunk_delay_ms": 200, "completion_tokens": 50}}
    started = threading.Barrier(4)
    outcomes: list[str] = []
    statuses: list[int] = []

    def stream() -> None:
        try:
            with httpx.stream("POST", f"{first.base_url}/v1/chat/completions", json=body, headers=auth,
                              timeout=30) as response:
                statuses.append(response.status_code)
                lines = response.iter_lines()
                for line in lines:
                    if '"content":"' in line:
                        break
                started.wait(timeout=20)
                for _ in lines:
                    pass
            outcomes.append("ended")
        except Exception as exc:  # noqa: BLE001 - a dropped connection, whatever httpx calls it
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for thread in threads:
        thread.start()
    started.wait(timeout=20)
    assert statuses == [200, 200, 200]
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    for thread in threads:
        thread.join(timeout=20)
    first.stop()
    assert len(outcomes) == 3 and "ended" not in outcomes, outcomes  # every stream was cut short

    second = ServeProcess(env, tmp_path / "second.log")
    try:
        second.wait_ready()
        admin2 = admin_client(second.base_url)
        with admin2:
            ledger = admin2.get(f"/admin/accounts/{account}/ledger").json()["data"]
            charges = [e["generation_id"] for e in ledger if e["kind"] == "charge"]
            assert sorted(charges) == sorted(done), (outcomes, ledger)  # the three completed calls, once each; no stream
            balance = Decimal(str(admin2.get(f"/admin/accounts/{account}").json()["balance"]))
            assert balance == sum((Decimal(str(e["amount"])) for e in ledger), Decimal(0))
            usage = httpx.get(f"{second.base_url}/v1/usage", headers=auth, timeout=30).json()
            assert Decimal(str(usage["available"])) == Decimal(str(usage["balance"])) == balance  # no hold survived
            # The same generations are not charged again by anything after the restart.
            time.sleep(0.5)
            again = admin2.get(f"/admin/accounts/{account}/ledger").json()["data"]
            assert again == ledger
    finally:
        second.stop()
        admin.close()
