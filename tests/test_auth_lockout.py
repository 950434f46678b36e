"""Issue 20.4: failed-authentication throttling slows guessing and never denies a valid key.

An attacker sharing a customer's address (one NAT, one proxy) floods it with made-up keys. The address
is locked out: its unknown keys get 429. But the customer's keys, the ones already in use and the ones
never used before, keep working, before and after caches are emptied, and so does the dashboard sign-in.
Guesses also count per key prefix, so spreading them over many addresses does not dodge the lockout;
a revoked key one client keeps sending locks nobody out. With Redis the counts are shared by instances.
The shipped deploy files give the gateway each client's real address and trust only their own proxy.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.redis_server import redis_server

MESSAGES = [{"role": "user", "content": "hi"}]
DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def guess(prefix: str = "rk-") -> str:
    """A made-up key of the right shape (so it is looked up, as a real brute-forcer's would be)."""
    return prefix + secrets.token_urlsafe(30)[: 43 - len(prefix)]


def chat(gw: RunningGateway, key: str, address: str | None = None) -> httpx.Response:
    """A call from `address` (uvicorn trusts X-Forwarded-For from loopback, as from a proxy)."""
    headers = {"authorization": f"Bearer {key}"}
    if address:
        headers["x-forwarded-for"] = address
    return httpx.post(f"{gw.base_url}/v1/chat/completions", headers=headers,
                      json={"model": "glm-4.5-air", "messages": MESSAGES, "max_tokens": 5}, timeout=30)


def dashboard_sign_in(gw: RunningGateway, key: str, address: str) -> int:
    with httpx.Client(base_url=gw.base_url, follow_redirects=False, timeout=30,
                      headers={"x-forwarded-for": address}) as web:
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', web.get("/dashboard/login").text)
        assert csrf is not None
        return web.post("/dashboard/login", data={"api_key": key, "csrf_token": csrf.group(1)}).status_code


def new_key(gw: RunningGateway, account: str) -> str:
    return str(gw.admin.post(f"/admin/accounts/{account}/keys", json={}).raise_for_status().json()["key"])


@pytest.fixture()
def locking_gateway(sim_url: str, tmp_path: Path) -> Iterator[RunningGateway]:
    with run_gateway(sqlite_url(tmp_path), sim_url, auth_failures_per_minute=5, auth_lockout=30) as gw:
        yield gw


def test_an_attacker_at_the_customers_address_cannot_deny_the_customer_service(
        locking_gateway: RunningGateway) -> None:
    gw, shared = locking_gateway, "203.0.113.7"
    account, used = gw.create_account("1")
    assert chat(gw, used, shared).status_code == 200  # a key in use (cached)
    never_used, never_used_for_web = new_key(gw, account), new_key(gw, account)

    statuses = [chat(gw, guess(), shared).status_code for _ in range(12)]
    assert statuses[:4] == [401] * 4 and set(statuses[5:]) == {429}, statuses  # the address is locked out
    locked = chat(gw, guess(), shared)
    assert locked.json()["error"]["code"] == "too_many_failed_authentications"
    assert 25 <= int(locked.headers["retry-after"]) <= 30

    assert chat(gw, used, shared).status_code == 200
    response = chat(gw, never_used, shared)
    assert response.status_code == 200, response.text  # never used: looked up, and it is valid
    assert dashboard_sign_in(gw, never_used_for_web, shared) == 303
    # A top-up empties the account's cached keys: they are looked up again, and still pass.
    gw.admin.post(f"/admin/accounts/{account}/credits", json={"amount_usd": "1"}).raise_for_status()
    assert chat(gw, used, shared).status_code == 200 and chat(gw, never_used, shared).status_code == 200
    assert chat(gw, guess(), shared).status_code == 429  # while guesses stay refused
    assert chat(gw, guess(), "198.51.100.1").status_code == 401  # and other addresses are not locked out


def test_guesses_count_per_key_prefix_across_addresses(locking_gateway: RunningGateway) -> None:
    gw = locking_gateway
    _, key = gw.create_account("1")
    prefix = key[:10]  # the display prefix, shown in key lists
    statuses = [chat(gw, guess(prefix), f"198.51.100.{i}").status_code for i in range(1, 8)]
    assert statuses[:4] == [401] * 4 and set(statuses[5:]) == {429}, statuses  # 7 addresses, one prefix
    assert chat(gw, guess(prefix), "198.51.100.99").status_code == 429
    assert chat(gw, key, "198.51.100.99").status_code == 200  # the key with that prefix still works
    assert chat(gw, guess(), "198.51.100.99").status_code == 401  # that address itself is not locked out


def test_a_revoked_key_in_use_does_not_lock_out_its_address(locking_gateway: RunningGateway) -> None:
    gw, address = locking_gateway, "192.0.2.44"
    account, key = gw.create_account("1")
    key_id = gw.admin.get(f"/admin/accounts/{account}/keys").json()["data"][0]["id"]
    gw.admin.delete(f"/admin/keys/{key_id}").raise_for_status()
    assert [chat(gw, key, address).status_code for _ in range(20)] == [401] * 20
    assert chat(gw, guess(), address).status_code == 401  # not 429: a revoked key is not a guess
    assert chat(gw, "not-a-key", address).status_code == 401


def test_failed_keys_are_counted_across_instances_sharing_redis(sim_url: str, tmp_path: Path) -> None:
    """With Redis, guesses spread over two instances add up, the lockout holds on both, and on both
    valid keys still pass, used or not."""
    with redis_server() as redis_srv:
        env = {"RUNAPI_REDIS_URL": redis_srv.url}
        database_url = sqlite_url(tmp_path)
        with run_gateway(database_url, sim_url, env=env, auth_failures_per_minute=6, auth_lockout=30) as a, \
                run_gateway(database_url, sim_url, env=env, auth_failures_per_minute=6, auth_lockout=30) as b:
            account, used = a.create_account("1")
            assert chat(a, used).status_code == 200 and chat(b, used).status_code == 200
            statuses = [chat(gw, guess()).status_code for _ in range(3) for gw in (a, b)]
            assert statuses == [401] * 6  # 3 + 3: neither instance alone reached 6
            for gw in (a, b):
                locked = chat(gw, guess())
                assert locked.status_code == 429, locked.text
                assert locked.json()["error"]["code"] == "too_many_failed_authentications"
                assert 25 <= int(locked.headers["retry-after"]) <= 30
                assert chat(gw, new_key(a, account)).status_code == 200  # never used, still valid
                assert chat(gw, used).status_code == 200


def test_the_shipped_deployment_trusts_only_its_own_proxy_for_client_addresses() -> None:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    proxy_address = services["lb"]["networks"]["default"]["ipv4_address"]
    assert services["gateway"]["environment"]["FORWARDED_ALLOW_IPS"] == proxy_address
    assert "ports" not in services["gateway"]  # reachable only through the proxy
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$remote_addr;", nginx)  # replaced, not appended
    assert "FORWARDED_ALLOW_IPS=" in (DEPLOY / "runapi.env").read_text()
