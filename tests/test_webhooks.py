"""Signed webhooks: Standard Webhooks signatures, retries with backoff, rotation, the SSRF guard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from typer.testing import CliRunner

from runapi.cli.main import app as cli
from runapi.storage import create_engine
from runapi.storage.schema import webhook_events
from runapi.outbound import CallbackGuard, CallbackRefused
from runapi.outbound.guarded_resolver import GuardedResolver
from runapi.tasks.webhook_store import event_row
from tests.support.gateway import RunningGateway, sqlite_url
from tests.support.tasks import (
    Receiver,
    chat_task,
    client,
    fast_tasks,
    run_task_gateway,
    serve_receiver,
    wait_finished,
    wait_for,
)


@pytest.fixture(scope="module")
def gw(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with run_task_gateway(sqlite_url(tmp_path_factory.mktemp("webhooks")), sim_url) as running:
        yield running


def deliveries(http: httpx.Client, task_id: str) -> dict:  # type: ignore[type-arg]
    return dict(http.get(f"/v1/tasks/{task_id}/deliveries").raise_for_status().json())


def event_status(http: httpx.Client, task_id: str) -> str | None:
    events = deliveries(http, task_id)["events"]
    return str(events[0]["status"]) if events else None


def test_receiver_failing_twice_gets_the_event_once_more(gw: RunningGateway) -> None:
    _, key = gw.create_account("1")
    receiver = Receiver(fail_first=2)
    with client(gw, key) as http, serve_receiver(receiver) as hook:
        task = http.post("/v1/tasks", json=chat_task(callback_url=hook)).json()
        wait_for(lambda: event_status(http, task["id"]) == "delivered")
        time.sleep(0.5)  # several backoff periods: nothing more may arrive
        received = receiver.for_task(task["id"])
        secret = http.get("/v1/webhooks/secret").json()["secret"]
        listed = deliveries(http, task["id"])

    assert len(received) == 3
    assert len({h["webhook-id"] for h, _ in received}) == 1  # the same event, retried
    assert len({b for _, b in received}) == 1
    for headers, body in received:
        assert Webhook(secret).verify(body, headers)["data"]["status"] == "succeeded"
    (event,) = listed["events"]
    assert event["id"] == received[0][0]["webhook-id"] and event["attempts"] == 3 and event["type"] == "task.succeeded"
    attempts = listed["data"]
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in attempts] == [
        (1, 500, "retrying"), (2, 500, "retrying"), (3, 204, "delivered")]
    assert attempts[0]["error"] == "HTTP 500" and all(a["webhook_id"] == event["id"] for a in attempts)
    assert attempts[1]["created_at"] - attempts[0]["created_at"] >= 0.04  # backoff: 0.05 s, then 0.1 s
    assert attempts[2]["created_at"] - attempts[1]["created_at"] >= 0.09

    runner = CliRunner()
    env = {"RUNAPI_DATABASE_URL": gw.settings.database_url, "RUNAPI_CONFIG": "", "COLUMNS": "250"}
    shown = runner.invoke(cli, ["tasks", "deliveries", task["id"]], env=env)
    assert shown.exit_code == 0, shown.output
    assert event["id"] in shown.output and shown.output.count("retrying") == 2 and "delivered" in shown.output
    listed_cli = runner.invoke(cli, ["tasks", "list"], env=env)
    assert listed_cli.exit_code == 0 and task["id"] in listed_cli.output


def test_webhook_retries_stop_after_the_window(sim_url: str, tmp_path: Path) -> None:
    # A window of about 15 backoffs: at least 4 attempts even on a loaded machine (0.6 s once gave 3).
    settings = fast_tasks(webhook_retry_window=1.5, webhook_backoff=0.05, webhook_backoff_max=0.1)
    with run_task_gateway(sqlite_url(tmp_path), sim_url, settings) as gw:
        _, key = gw.create_account("1")
        receiver = Receiver(fail_first=10_000, status=503)
        with client(gw, key) as http, serve_receiver(receiver) as hook:
            task = http.post("/v1/tasks", json=chat_task(callback_url=hook)).json()
            wait_for(lambda: event_status(http, task["id"]) == "failed")
            listed = deliveries(http, task["id"])
            time.sleep(0.3)
            assert len(receiver.for_task(task["id"])) == len(listed["data"])  # no attempt after failing
    attempts = listed["data"]
    assert len(attempts) >= 4
    assert [a["outcome"] for a in attempts] == ["retrying"] * (len(attempts) - 1) + ["failed"]
    assert {a["status_code"] for a in attempts} == {503}


def test_secret_rotation_signs_with_both_during_grace(gw: RunningGateway) -> None:
    account, key = gw.create_account("1")
    receiver = Receiver()
    with client(gw, key) as http, serve_receiver(receiver) as hook:
        old = http.get("/v1/webhooks/secret").json()["secret"]
        rotated = http.post("/v1/webhooks/secret/rotate").json()
        new = rotated["secret"]
        assert new != old and new.startswith("whsec_")
        assert http.get("/v1/webhooks/secret").json() == {"object": "webhook_secret", "secret": new,
                                                         "previous_secret_active": True}
        task = http.post("/v1/tasks", json=chat_task(callback_url=hook)).json()
        (headers, body), = wait_for(lambda: receiver.for_task(task["id"]))
        assert len(headers["webhook-signature"].split(" ")) == 2
        for secret in (old, new):
            Webhook(secret).verify(body, headers)

        by_operator = gw.admin.post(f"/admin/accounts/{account}/webhook-secret/rotate").json()["secret"]
        assert http.get("/v1/webhooks/secret").json()["secret"] == by_operator
        with pytest.raises(WebhookVerificationError):
            Webhook(by_operator).verify(body, headers)
        assert httpx.post(f"{gw.base_url}/admin/accounts/{account}/webhook-secret/rotate").status_code == 401


@pytest.mark.parametrize(("url", "kind"), [
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://[fd00:ec2::254]/", "cloud metadata"),
    ("http://127.0.0.2:8080/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://[::ffff:10.0.0.1]/hook", "private"),
    ("http://10.1.2.3/hook", "private"),
    ("https://192.168.0.10/hook", "private"),
    ("http://172.16.5.4/hook", "private"),
    ("http://169.254.1.1/hook", "link-local"),
    ("http://224.0.0.1/hook", "multicast"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("http://100.64.1.1/hook", "shared (carrier-grade NAT)"),
    ("http://240.0.0.1/hook", "reserved"),
    ("ftp://example.com/hook", "http:// or https://"),
    ("/relative/hook", "http:// or https://"),
    ("http://no-such-host.invalid/hook", "does not resolve"),
])
def test_callback_url_ssrf_refused(gw: RunningGateway, url: str, kind: str) -> None:
    _, key = gw.create_account("1")
    with client(gw, key) as http:
        response = http.post("/v1/tasks", json=chat_task(callback_url=url))
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "callback_url_refused" and error["param"] == "callback_url"
        assert kind in error["message"]
        assert http.get("/v1/tasks").json()["data"] == []


def test_allow_list_and_delivery_time_recheck(sim_url: str, tmp_path: Path) -> None:
    """An event whose URL is no longer allowed when it is sent fails at once, without a request."""
    with run_task_gateway(sqlite_url(tmp_path), sim_url, fast_tasks(webhook_allow=())) as gw:
        account, key = gw.create_account("1")
        receiver = Receiver()
        with client(gw, key) as http, serve_receiver(receiver) as hook:
            refused = http.post("/v1/tasks", json=chat_task(callback_url=hook))
            assert refused.status_code == 400 and "127.0.0.1 a loopback address" in refused.json()["error"]["message"]
            task = wait_finished(http, http.post("/v1/tasks", json=chat_task()).json()["id"])

            async def enqueue() -> None:  # as if accepted while 127.0.0.1 was allow-listed
                engine = create_engine(gw.settings.database_url)
                async with engine.begin() as conn:
                    await conn.execute(webhook_events.insert().values(
                        **event_row(task["id"], account, hook, "task.succeeded", "{}")))
                await engine.dispose()

            asyncio.run(enqueue())
            (attempt,) = wait_for(lambda: deliveries(http, task["id"])["data"])
            assert attempt["outcome"] == "failed" and attempt["status_code"] is None
            assert "loopback" in attempt["error"]
            assert receiver.requests == []


async def test_guarded_resolver_refuses_names_that_resolve_inward() -> None:
    guard = CallbackGuard()
    with pytest.raises(CallbackRefused, match="localhost resolves to"):
        await guard.check("http://localhost:9/hook")
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(guard), use_dns_cache=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(CallbackRefused):
            await session.get("http://localhost:9/hook")
    allowed = CallbackGuard(["localhost", "10.0.0.0/8"])
    await allowed.check("http://localhost:9/hook")
    allowed.check_address("10.9.8.7", "internal.example")
    with pytest.raises(CallbackRefused, match="cloud metadata"):
        CallbackGuard(["169.254.0.0/16"]).check_address("169.254.169.254", "metadata.example")
    CallbackGuard(["169.254.169.254"]).check_address("169.254.169.254", "metadata.example")
