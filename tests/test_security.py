"""Security promises (SECURITY.md): keys stored hashed, the admin surface behind its token, tenants
isolated from each other, brute-force protection on authentication, secrets never in logs or errors."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from runapi.http.openapi import build_openapi
from runapi.storage import upgrade
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, sqlite_url
from tests.support.instances import ServeProcess, write_config

MESSAGES = [{"role": "user", "content": "hello"}]


def chat(gw: RunningGateway, key: str, **extra: object) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": "glm-4.5-air", "messages": MESSAGES, **extra}, timeout=30)


def test_keys_are_stored_only_as_sha256_hashes(gateway: RunningGateway) -> None:
    account_id, key = gateway.create_account("1")
    assert chat(gateway, key).status_code == 200
    path = gateway.settings.database_url.split("///", 1)[1]
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT * FROM api_keys WHERE account_id = ?", (account_id,)).fetchall()
        hashes = [r[0] for r in db.execute("SELECT key_hash FROM api_keys WHERE account_id = ?", (account_id,))]
    assert rows and hashes == [hashlib.sha256(key.encode()).hexdigest()]
    assert all(key not in str(value) for row in rows for value in row)
    stored = [f for f in Path(path).parent.glob(Path(path).name + "*") if f.is_file()]  # the database, its WAL
    stored += Path(path + "-journal.d").glob("*")  # and the settlement journal
    for file in stored:
        assert key.encode() not in file.read_bytes()
    listed = gateway.admin.get(f"/admin/accounts/{account_id}/keys").raise_for_status().text
    assert key not in listed  # shown once at creation, never again


def near_miss(key: str) -> str:
    """`key` with only its last character changed."""
    return key[:-1] + ("A" if key[-1] != "A" else "B")


@pytest.fixture()
def sql_parameters(gateway: RunningGateway) -> Iterator[list[str]]:
    """Every SQL statement parameter the gateway's database engine sends while the test runs."""
    sent: list[str] = []

    def record(conn: object, cursor: object, statement: str, parameters: object, context: object,
               executemany: bool) -> None:
        sent.append(repr(parameters))

    engine = gateway.gateway.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", record)
    yield sent
    sa.event.remove(engine, "before_cursor_execute", record)


@pytest.fixture()
def compare_digest_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes | str, bytes | str]]:
    """A spy on the standard library's `hmac.compare_digest` (the real one still answers)."""
    calls: list[tuple[bytes | str, bytes | str]] = []
    real = hmac.compare_digest

    def spy(a: bytes | str, b: bytes | str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


def test_a_key_differing_only_in_its_last_character_is_refused(gateway: RunningGateway) -> None:
    _, key = gateway.create_account("1")
    assert chat(gateway, key).status_code == 200
    refused = chat(gateway, near_miss(key))
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    assert chat(gateway, key + "x").status_code == 401 and chat(gateway, key[:-1]).status_code == 401


def test_keys_are_looked_up_by_digest_never_by_their_text(gateway: RunningGateway, sql_parameters: list[str]) -> None:
    """The database is asked for SHA-256(presented key), never the key: what it compares carries no
    attacker-chosen prefix, so how long a lookup takes can't tell how many leading characters were right."""
    _, key = gateway.create_account("1")
    guess = near_miss(key)
    assert chat(gateway, guess).status_code == 401  # neither is cached yet: both go to the database
    assert chat(gateway, key).status_code == 200
    sent = "\n".join(sql_parameters)
    assert hashlib.sha256(guess.encode()).hexdigest() in sent and hashlib.sha256(key.encode()).hexdigest() in sent
    assert key[10:] not in sent and guess[10:] not in sent  # not the secret part of either (10: the shown prefix)


def test_the_admin_token_is_compared_with_hmac_compare_digest(
        gateway: RunningGateway, compare_digest_calls: list[tuple[bytes | str, bytes | str]]) -> None:
    """The operator's token, in the admin API and the operator sign-in, is checked by the standard
    library's constant-time comparison, and only by it."""
    wrong = ADMIN_TOKEN[:-1] + "x"  # right but for the last character
    response = httpx.get(f"{gateway.base_url}/admin/accounts", headers={"authorization": f"Bearer {wrong}"})
    assert response.status_code == 401
    assert (wrong.encode(), ADMIN_TOKEN.encode()) in compare_digest_calls
    compare_digest_calls.clear()
    assert gateway.admin.get("/admin/accounts").status_code == 200
    assert (ADMIN_TOKEN.encode(), ADMIN_TOKEN.encode()) in compare_digest_calls

    with httpx.Client(base_url=gateway.base_url) as web:
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', web.get("/admin/dashboard/login").text)
        assert csrf is not None
        compare_digest_calls.clear()
        signed = web.post("/admin/dashboard/login", data={"csrf_token": csrf.group(1), "token": wrong})
        assert signed.status_code == 401
    assert (wrong.encode(), ADMIN_TOKEN.encode()) in compare_digest_calls


ADMIN_OPERATIONS = [(path, method) for path, item in build_openapi()["paths"].items() for method in item
                    if path.startswith("/admin/") and not path.startswith("/admin/dashboard")]


@pytest.mark.parametrize(("path", "method"), ADMIN_OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in ADMIN_OPERATIONS])
def test_every_admin_endpoint_needs_the_admin_token(gateway: RunningGateway, path: str, method: str) -> None:
    _, customer_key = gateway.create_account("1") if method == "get" and path == "/admin/tiers" else ("", "rk-x")
    url = gateway.base_url + re.sub(r"\{[^}]+\}", "acct_x", path)
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Bearer {ADMIN_TOKEN}x"},
                    {"authorization": f"Bearer {customer_key}"}, {"authorization": f"Basic {ADMIN_TOKEN}"}):
        response = httpx.request(method.upper(), url, headers=headers, json={})
        assert response.status_code == 401, (path, headers, response.text)
        assert response.json()["error"]["type"] == "authentication_error"
        assert ADMIN_TOKEN not in response.text


def test_operator_pages_need_the_admin_token(gateway: RunningGateway) -> None:
    with httpx.Client(base_url=gateway.base_url, follow_redirects=False) as web:
        page = web.get("/admin/dashboard")
        assert page.status_code in (303, 401) and "acct_" not in page.text
        if page.status_code == 303:
            assert page.headers["location"].endswith("/admin/dashboard/login")
        account_id, _ = gateway.create_account("1")
        topup = web.post("/admin/dashboard/topup", data={"account": account_id, "amount": "100"})
        assert topup.status_code in (303, 401, 403)
        if topup.status_code == 303:
            assert topup.headers["location"].endswith("/admin/dashboard/login")
        assert gateway.balance(account_id) == 1
        wrong = web.post("/admin/dashboard/login", data={"token": "wrong"})
        assert wrong.status_code in (401, 403) and "runapi_admin" not in wrong.headers.get("set-cookie", "")


def test_tenants_cannot_see_each_other(gateway: RunningGateway) -> None:
    """Account B, with its own valid key, tries every endpoint that could show A's data.
    (Tasks and their deliveries are also covered by tests/test_tasks.py::test_tasks_are_private_to_their_account.)"""
    account_a, key_a = gateway.create_account("1")
    _, key_b = gateway.create_account("1")
    generation = chat(gateway, key_a).raise_for_status().json()["id"]
    key_a_id = gateway.admin.get(f"/admin/accounts/{account_a}/keys").json()["data"][0]["id"]
    b = httpx.Client(base_url=gateway.base_url, headers={"authorization": f"Bearer {key_b}"}, timeout=30)
    a = httpx.Client(base_url=gateway.base_url, headers={"authorization": f"Bearer {key_a}"}, timeout=30)
    with a, b:
        assert a.get(f"/v1/generations/{generation}").status_code == 200
        assert b.get(f"/v1/generations/{generation}").status_code == 404
        usage_b = b.get("/v1/usage", params={"key_id": key_a_id}).raise_for_status().json()  # A's key as a filter
        assert usage_b["data"] == [] and usage_b["account_id"] != account_a and usage_b["key"]["id"] != key_a_id
        assert a.get("/v1/usage").json()["data"] != []
        assert a.get("/v1/webhooks/secret").json() != b.get("/v1/webhooks/secret").json()
        task = a.post("/v1/tasks", json={"model": "glm-4.5-air", "input": {"messages": MESSAGES}})
        assert task.status_code == 202, task.text
        task_id = task.json()["id"]
        for path in (f"/v1/tasks/{task_id}", f"/v1/tasks/{task_id}/deliveries"):
            assert b.get(path).status_code == 404
        assert b.post(f"/v1/tasks/{task_id}/cancel").status_code == 404
        assert task_id not in b.get("/v1/tasks").text
        # An output URL is a bearer capability: without its signature it is refused, key or not.
        assert b.get(f"/v1/outputs/{task_id}").status_code == 403
        assert b.get(f"/v1/outputs/{task_id}", params={"expires": "9999999999", "signature": "AAAA"}).status_code == 403
        # B's key opens no admin endpoint.
        assert b.get(f"/admin/accounts/{account_a}").status_code == 401
    # B's dashboard session cannot revoke A's key.
    with httpx.Client(base_url=gateway.base_url, follow_redirects=False, timeout=30) as web:
        form = web.get("/dashboard/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert csrf is not None
        assert web.post("/dashboard/login", data={"api_key": key_b, "csrf_token": csrf.group(1)}).status_code == 303
        page = web.get("/dashboard").text
        assert key_a_id not in page and generation not in page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token is not None
        web.post(f"/dashboard/keys/{key_a_id}/revoke", data={"csrf_token": token.group(1)})
    assert chat(gateway, key_a).status_code == 200  # A's key still works


@pytest.fixture()
def logged_instance(sim_url: str, tmp_path: Path) -> Iterator[tuple[ServeProcess, str]]:
    """`runapi serve` with a provider key in its environment (the simulator ignores it), logging to a file."""
    provider_key = "sk-provider-SECRET-" + "9f8e7d6c5b4a" * 3
    database_url = sqlite_url(tmp_path)
    upgrade(database_url)
    config = write_config(tmp_path / "runapi.toml", sim_url)
    config.write_text(config.read_text().replace(
        f'[providers."zai"]\nbase_url = "{sim_url}/v1"\napi_key_env = ""',
        f'[providers."zai"]\nbase_url = "{sim_url}/v1"\napi_key_env = "RUNAPI_TEST_ZAI_KEY"'))
    assert "RUNAPI_TEST_ZAI_KEY" in config.read_text()
    env = {**os.environ, "RUNAPI_DATABASE_URL": database_url, "RUNAPI_ADMIN_TOKEN": ADMIN_TOKEN,
           "RUNAPI_CONFIG": str(config), "RUNAPI_TEST_ZAI_KEY": provider_key}
    env.pop("RUNAPI_REDIS_URL", None)
    instance = ServeProcess(env, tmp_path / "serve.log")
    try:
        instance.wait_ready()
        yield instance, provider_key
    finally:
        instance.stop()


def test_no_secret_reaches_logs_or_error_messages(logged_instance: tuple[ServeProcess, str]) -> None:
    instance, provider_key = logged_instance
    admin = httpx.Client(base_url=instance.base_url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    keys: list[str] = []
    bodies: list[str] = []
    with admin:
        account = admin.post("/admin/accounts", json={"name": "logs"}).raise_for_status().json()["id"]
        admin.post(f"/admin/accounts/{account}/credits", json={"amount_usd": "5"}).raise_for_status()
        for _ in range(2):
            keys.append(admin.post(f"/admin/accounts/{account}/keys", json={}).raise_for_status().json()["key"])
        revoked_id = admin.get(f"/admin/accounts/{account}/keys").json()["data"][-1]["id"]
        with httpx.Client(base_url=instance.base_url, timeout=30) as c:
            def send(key: str, **body: object) -> None:
                response = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                                  json={"model": "glm-4.5-air", "messages": MESSAGES, **body})
                bodies.append(response.text + str(response.headers))

            send(keys[0])
            send(keys[0], stream=True)
            for fault in ("500", "429", "cut", "bad_json", "error_event"):
                send(keys[0], x_sim={"fault": fault})
            send(keys[0], stream=True, x_sim={"fault": "cut"})
            send(keys[0], model="no-such-model")
            send(keys[0], messages="not a list")
            admin.delete(f"/admin/keys/{revoked_id}")
            send(keys[1])  # revoked
            send("rk-" + "wrong" * 8)
            c.post("/v1/chat/completions", content=b"{bad", headers={"authorization": f"Bearer {keys[0]}"})
            m = c.post("/v1/messages", headers={"x-api-key": keys[0]},
                       json={"model": "glm-4.5-air", "max_tokens": 10, "messages": MESSAGES, "x_sim": {"fault": "500"}})
            bodies.append(m.text)
            t = c.post("/v1/tasks", headers={"authorization": f"Bearer {keys[0]}"},
                       json={"model": "glm-4.5-air", "input": {"messages": MESSAGES},
                             "callback_url": "http://169.254.169.254/latest"})
            bodies.append(t.text)
    instance.stop()
    log = instance.log_path.read_text(errors="replace")
    for secret in (provider_key, ADMIN_TOKEN, *keys):
        assert secret not in log
        assert all(secret not in body for body in bodies)
