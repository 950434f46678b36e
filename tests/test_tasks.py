"""Asynchronous tasks through a real gateway and the simulator: lifecycle, billing, isolation, cancel."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from runapi.simulator import prompt_tokens, reply_words
from tests.support.gateway import RunningGateway, sqlite_url
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


@pytest.fixture(scope="module")
def gw(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with run_task_gateway(sqlite_url(tmp_path_factory.mktemp("tasks")), sim_url) as running:
        yield running


def test_task_lifecycle_with_signed_webhook(gw: RunningGateway) -> None:
    account, key = gw.create_account("1")
    receiver = Receiver()
    with client(gw, key) as http, serve_receiver(receiver) as hook:
        accepted = http.post("/v1/tasks", json=chat_task(callback_url=hook, metadata={"batch": "7"}))
        assert accepted.status_code == 202, accepted.text
        task = accepted.json()
        assert task["id"].startswith("task_") and task["status"] in ("queued", "running", "succeeded")
        assert accepted.headers["location"] == f"/v1/tasks/{task['id']}"
        done = wait_finished(http, task["id"])
        secret = http.get("/v1/webhooks/secret").json()["secret"]
        wait_for(lambda: receiver.for_task(task["id"]))

    assert done["status"] == "succeeded" and done["metadata"] == {"batch": "7"} and done["runs"] == 1
    assert done["result"]["choices"][0]["message"]["content"] == " ".join(reply_words(12))
    assert done["result"]["id"] == done["generation_id"]
    assert Decimal(str(done["cost"])) == AIR_COST
    assert done["output_url"].startswith(gw.base_url + f"/v1/outputs/{task['id']}?")
    charges = [e for e in gw.ledger(account) if e["kind"] == "charge"]
    assert [e["generation_id"] for e in charges] == [done["generation_id"]]
    assert gw.balance(account) == Decimal(1) - AIR_COST

    (headers, body), = receiver.for_task(task["id"])
    assert secret.startswith("whsec_")
    event = Webhook(secret).verify(body, headers)  # raises unless the signature is right
    assert event["type"] == "task.succeeded" and event["data"]["id"] == task["id"]
    assert event["data"]["result"]["usage"]["completion_tokens"] == 12
    assert headers["webhook-id"].startswith("msg_")
    with pytest.raises(Exception):
        Webhook(secret).verify(body.replace(b"succeeded", b"failed"), headers)


def test_failed_task_is_not_charged(gw: RunningGateway) -> None:
    account, key = gw.create_account("1")
    with client(gw, key) as http:
        task = http.post("/v1/tasks", json=chat_task(x_sim={"fault": "500"})).json()
        done = wait_finished(http, task["id"])
    assert done["status"] == "failed" and done["error"]["type"] == "upstream_error"
    assert done["result"] is None and done["output_url"] is None and Decimal(str(done["cost"])) == 0
    assert gw.balance(account) == Decimal(1)


def test_tasks_are_private_to_their_account(gw: RunningGateway) -> None:
    _, key_a = gw.create_account("1")
    _, key_b = gw.create_account("1")
    with client(gw, key_a) as a, client(gw, key_b) as b:
        ids = [a.post("/v1/tasks", json=chat_task()).json()["id"] for _ in range(3)]
        for task_id in ids:
            wait_finished(a, task_id)
            for path in (f"/v1/tasks/{task_id}", f"/v1/tasks/{task_id}/deliveries"):
                assert b.get(path).status_code == 404
            assert b.post(f"/v1/tasks/{task_id}/cancel").status_code == 404
        assert b.get("/v1/tasks").json()["data"] == []
        page = a.get("/v1/tasks", params={"limit": 2}).json()
        assert [t["id"] for t in page["data"]] == ids[::-1][:2] and page["has_more"] is True
        rest = a.get("/v1/tasks", params={"limit": 2, "after": page["last_id"]}).json()
        assert [t["id"] for t in rest["data"]] == [ids[0]] and rest["has_more"] is False
        assert all(t["result"] is None and t["output_url"] for t in page["data"])  # lists carry no results
        assert a.get("/v1/tasks", params={"status": "failed"}).json()["data"] == []
        assert a.get("/v1/tasks", params={"status": "bogus"}).status_code == 400


def test_cancel_queued_and_running_tasks(sim_url: str, tmp_path: Path) -> None:
    with run_task_gateway(sqlite_url(tmp_path), sim_url, fast_tasks(workers=1)) as gw:
        account, key = gw.create_account("1")
        with client(gw, key) as http:
            running = http.post("/v1/tasks", json=chat_task(x_sim={"latency_ms": 3000})).json()
            queued = http.post("/v1/tasks", json=chat_task()).json()
            wait_for(lambda: http.get(f"/v1/tasks/{running['id']}").json()["status"] == "running")
            assert http.get(f"/v1/tasks/{queued['id']}").json()["status"] == "queued"

            cancelled = http.post(f"/v1/tasks/{queued['id']}/cancel")
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
            stopped = http.post(f"/v1/tasks/{running['id']}/cancel").json()
            assert stopped["status"] == "cancelled" and stopped["finished_at"] is not None
            again = http.post(f"/v1/tasks/{running['id']}/cancel")
            assert again.status_code == 409 and again.json()["error"]["code"] == "task_finished"
        assert gw.balance(account) == Decimal(1)  # the interrupted call was not charged
        assert [e["kind"] for e in gw.ledger(account)] == ["topup"]


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"model": "glm-4.5-air", "input": {"messages": []}}, 400, "input.messages"),
    ({"model": "glm-4.5-air", "input": {"messages": [{"role": "robot", "content": "x"}]}}, 400,
     "input.messages[0].role"),
    ({"model": "no-such-model", "input": {"messages": MESSAGES}}, 404, "model"),
    ({"input": {"messages": MESSAGES}}, 400, "model"),
    ({"model": "glm-4.5-air", "input": {"messages": MESSAGES, "stream": True}}, 400, "input.stream"),
    ({"model": "glm-4.5-air", "input": {"model": "glm-4.6", "messages": MESSAGES}}, 400, "input.model"),
    ({"model": "glm-4.5-air", "input": {"messages": MESSAGES}, "callbackUrl": "x"}, 400, None),
    ({"model": "glm-4.5-air", "input": {"messages": MESSAGES}, "metadata": {str(i): "v" for i in range(17)}}, 400,
     "metadata"),
])
def test_bad_tasks_are_refused_at_submission(gw: RunningGateway, body: dict, status: int,  # type: ignore[type-arg]
                                             param: str | None) -> None:
    _, key = gw.create_account("1")
    with client(gw, key) as http:
        response = http.post("/v1/tasks", json=body)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["message"] and error["param"] == param
        assert http.get("/v1/tasks").json()["data"] == []


def test_messages_task_answers_in_anthropic_shape(gw: RunningGateway) -> None:
    account, key = gw.create_account("1")
    body = {"endpoint": "/v1/messages", "model": "glm-4.5-air",
            "input": {"max_tokens": 100, "messages": [{"role": "user", "content": "hello there"}]}}
    with client(gw, key) as http:
        task = http.post("/v1/tasks", json=body).json()
        done = wait_finished(http, task["id"])
    assert done["status"] == "succeeded", done
    assert done["endpoint"] == "/v1/messages" and done["result"]["type"] == "message"
    assert done["result"]["content"][0]["text"] == " ".join(reply_words(12))
    assert gw.balance(account) == Decimal(1) - Decimal(str(done["cost"])) and Decimal(str(done["cost"])) > 0


def test_task_of_a_revoked_key_fails_without_charge(sim_url: str, tmp_path: Path) -> None:
    with run_task_gateway(sqlite_url(tmp_path), sim_url, fast_tasks(workers=1)) as gw:
        account, key = gw.create_account("1")
        _, other = gw.create_account("1")
        with client(gw, key) as http, client(gw, other) as blocker:
            blocker.post("/v1/tasks", json=chat_task(x_sim={"latency_ms": 500}))  # occupies the only worker
            task = http.post("/v1/tasks", json=chat_task()).json()
            key_id = gw.admin.get(f"/admin/accounts/{account}/keys").json()["data"][0]["id"]
            gw.admin.delete(f"/admin/keys/{key_id}").raise_for_status()
        done = wait_for(lambda: next((t for t in gw.admin.get("/admin/tasks", params={"account_id": account})
                                      .json()["data"] if t["status"] in ("failed", "succeeded")), None))
        assert done["id"] == task["id"] and done["status"] == "failed"
        assert done["error"]["type"] == "authentication_error"
        assert gw.balance(account) == Decimal(1)


def test_tasks_on_each_backend_shared_by_two_instances(database_url: str, sim_url: str, sim: httpx.Client) -> None:
    """Two gateways on one database share the queue: every task runs exactly once."""
    with run_task_gateway(database_url, sim_url, fast_tasks(workers=3)) as one, \
            run_task_gateway(database_url, sim_url, fast_tasks(workers=3)) as two:
        account, key = one.create_account("5")
        before = sim.get("/_sim/stats").json()["requests"]
        with client(one, key) as a, client(two, key) as b:
            ids = [(a if i % 2 else b).post("/v1/tasks", json=chat_task(x_sim={"latency_ms": 100})).json()["id"]
                   for i in range(12)]
            finished = [wait_finished(a, task_id, timeout=30) for task_id in ids]
        assert {t["status"] for t in finished} == {"succeeded"}
        assert all(t["runs"] == 1 for t in finished)
        assert sim.get("/_sim/stats").json()["requests"] - before == 12  # no task ran twice
        charges = [e for e in one.ledger(account) if e["kind"] == "charge"]
        assert sorted(e["generation_id"] for e in charges) == sorted(t["generation_id"] for t in finished)
        assert one.balance(account) == Decimal(5) - 12 * AIR_COST


def test_rate_limited_tasks_wait_in_the_queue(gw: RunningGateway) -> None:
    """The free tier allows 2 concurrent calls: other tasks wait (requeued), and the wait is not a run."""
    account, key = gw.create_account("1")
    with client(gw, key) as http:
        ids = [http.post("/v1/tasks", json=chat_task(x_sim={"latency_ms": 300})).json()["id"] for _ in range(4)]
        finished = [wait_finished(http, task_id, timeout=20) for task_id in ids]
    assert [(t["status"], t["runs"]) for t in finished] == [("succeeded", 1)] * 4
    assert gw.balance(account) == Decimal(1) - 4 * AIR_COST
