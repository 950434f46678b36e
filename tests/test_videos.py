"""Video as an asynchronous task: the official openai SDK's `videos` calls against the gateway on the
simulator's Z.ai video jobs, the same job through `POST /v1/tasks` with a signed webhook carrying the
cached output URL, exact per-video billing through a durable hold, and FAIL, cancel, timeout free."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from runapi.simulator.media_routes import SAMPLE_MP4
from runapi.simulator.png import render_png
from tests.support.gateway import RunningGateway, sqlite_url
from tests.support.rollups import rollup_mismatches_of
from tests.support.sdk_clients import SdkClients
from tests.support.tasks import (
    Receiver,
    client,
    fast_tasks,
    run_task_gateway,
    serve_receiver,
    wait_for,
)

PRICE = Decimal("0.2")  # cogvideox-3, per video (builtin catalog)
ZAI_SUBMIT = "/api/paas/v4/videos/generations"
FAST_VIDEO: dict[str, Any] = {"video_poll_initial": 0.05, "video_poll_max": 0.2, "video_timeout": 60.0}


def _gateway(directory: Path, sim_url: str, media: dict[str, Any] | None = None,
             **tasks: Any) -> contextlib.AbstractContextManager[RunningGateway]:
    """A gateway whose Z.ai provider is the simulator's Z.ai routes, fast video polls, downloads from loopback."""
    return run_task_gateway(sqlite_url(directory), sim_url, fast_tasks(**{**FAST_VIDEO, **tasks}),
                            providers={"zai": {"base_url": f"{sim_url}/api/paas/v4", "api_key_env": ""}},
                            media={"download_allow": ["127.0.0.1"], **(media or {})})


@pytest.fixture(scope="module")
def gw(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with _gateway(tmp_path_factory.mktemp("videos"), sim_url) as running:
        yield running


_clients = SdkClients()
_close_clients = _clients.closed_after_module()


def video(http: httpx.Client, video_id: str) -> dict[str, Any]:
    return dict(http.get(f"/v1/videos/{video_id}").raise_for_status().json())


def wait_video(http: httpx.Client, video_id: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll `GET /v1/videos/{id}` until it reaches `status` (a final state other than it fails at once)."""
    def probe() -> dict[str, Any] | None:
        current = video(http, video_id)
        if current["status"] in ("completed", "failed") and current["status"] != status:
            raise AssertionError(f"video ended {current['status']}, not {status}: {current}")
        return current if current["status"] == status else None

    return wait_for(probe, timeout)


def kinds(gw: RunningGateway, account: str) -> list[tuple[str, Decimal]]:
    return [(e["kind"], Decimal(str(e["amount"]))) for e in gw.ledger(account)]


def sim_submissions(sim_url: str) -> int:
    return int(httpx.get(f"{sim_url}/_sim/stats").json()["by_path"].get(ZAI_SUBMIT, 0))


@pytest.mark.filterwarnings("ignore:The Sora API is scheduled:DeprecationWarning")
def test_openai_sdk_creates_retrieves_and_downloads_a_video_charged_once(gw: RunningGateway, sim_url: str) -> None:
    account, key = gw.create_account("1")
    sdk = _clients.open(gw.base_url, key)
    submitted = sim_submissions(sim_url)
    created = sdk.videos.create(model="cogvideox-3", prompt="a fox running through snow", seconds="5",  # type: ignore[arg-type]
                                size="1920x1080")  # type: ignore[arg-type]
    assert created.object == "video" and created.status in ("queued", "in_progress")
    assert (created.model, created.seconds, created.size, created.progress) == ("cogvideox-3", "5", "1920x1080",
                                                                                created.progress)
    assert gw.balance(account) == Decimal(1) - PRICE  # held in the ledger from submission

    with client(gw, key) as http:
        done = wait_video(http, created.id, "completed")
    retrieved = sdk.videos.retrieve(created.id)
    assert retrieved.status == "completed" and retrieved.progress == 100 and retrieved.error is None
    assert retrieved.completed_at is not None and retrieved.expires_at == done["expires_at"]
    assert sdk.videos.download_content(created.id).content == SAMPLE_MP4
    thumbnail = sdk.videos.download_content(created.id, variant="thumbnail").content
    assert thumbnail.startswith(b"\x89PNG\r\n\x1a\n")
    assert sim_submissions(sim_url) - submitted == 1

    ledger = kinds(gw, account)
    assert ledger == [("topup", Decimal(1)), ("hold", -PRICE), ("release", PRICE), ("charge", -PRICE)]
    assert gw.balance(account) == gw.ledger_sum(account) == Decimal(1) - PRICE
    # The report roll-ups took the video's generation, hold, release and charge with their rows.
    assert rollup_mismatches_of(gw.settings.database_url) == []
    with client(gw, key) as http:
        task = http.get(f"/v1/tasks/{created.id}").raise_for_status().json()
        generation = http.get(f"/v1/generations/{task['generation_id']}").raise_for_status().json()
    assert task["status"] == "succeeded" and Decimal(str(task["cost"])) == PRICE
    assert task["output_url"].startswith(f"{gw.base_url}/v1/media/")  # the cached MP4 itself
    assert Decimal(str(generation["cost"])) == PRICE and generation["model"] == "cogvideox-3"
    assert sdk.videos.list().data[0].id == created.id


def test_only_the_owner_sees_a_video(gw: RunningGateway) -> None:
    _, key = gw.create_account("1")
    _, other = gw.create_account("1")
    with client(gw, key) as http:
        video_id = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "a cat"}).raise_for_status().json()["id"]
        wait_video(http, video_id, "completed")
    with client(gw, other) as http:
        for path in (f"/v1/videos/{video_id}", f"/v1/videos/{video_id}/content", f"/v1/tasks/{video_id}"):
            answer = http.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["error"]["type"] == "not_found_error"
        assert http.delete(f"/v1/videos/{video_id}").status_code == 404
        assert http.get("/v1/videos").json()["data"] == []


def test_bad_input_is_400_and_short_credit_402_before_any_hold(gw: RunningGateway, sim_url: str) -> None:
    account, key = gw.create_account("0.1")
    submitted = sim_submissions(sim_url)
    with client(gw, key) as http:
        bad = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "x", "seconds": "7"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "seconds"
        unknown = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "x", "colour": "red"})
        assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "colour"
        short = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "a dog"})
        assert short.status_code == 402, short.text
        assert http.get("/v1/videos").json()["data"] == []
    assert kinds(gw, account) == [("topup", Decimal("0.1"))] and sim_submissions(sim_url) == submitted


def test_the_same_job_as_a_task_sends_a_signed_webhook_with_the_cached_video_url(gw: RunningGateway) -> None:
    account, key = gw.create_account("1")
    receiver = Receiver()
    with serve_receiver(receiver) as hook, client(gw, key) as http:
        created = http.post("/v1/tasks", json={"model": "cogvideox-3", "endpoint": "/v1/videos", "callback_url": hook,
                                               "input": {"prompt": "waves on a beach", "seconds": "5"}})
        assert created.status_code == 202, created.text
        task_id = created.json()["id"]
        headers, body = wait_for(lambda: receiver.for_task(task_id), 30)[0]
        secret = http.get("/v1/webhooks/secret").raise_for_status().json()["secret"]
        assert video(http, task_id)["status"] == "completed"  # the task is a video at /v1/videos too
    event = Webhook(secret).verify(body, headers)
    assert event["type"] == "task.succeeded"
    data = event["data"]
    assert data["id"] == task_id and data["endpoint"] == "/v1/videos" and Decimal(str(data["cost"])) == PRICE
    assert data["result"]["video_url"] == data["output_url"]
    fetched = httpx.get(data["output_url"])  # no API key: the signature is the credential
    assert fetched.status_code == 200 and fetched.content == SAMPLE_MP4
    assert fetched.headers["content-type"] == "video/mp4"
    assert httpx.get(data["output_url"].replace("signature=", "signature=0")).status_code == 403
    assert gw.balance(account) == gw.ledger_sum(account) == Decimal(1) - PRICE


def test_a_failed_video_is_free(gw: RunningGateway, sim: httpx.Client) -> None:
    account, key = gw.create_account("1")
    sim.post("/_sim/faults", json={"faults": ["fail"]}).raise_for_status()
    with client(gw, key) as http:
        video_id = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "a storm"}).raise_for_status().json()["id"]
        failed = wait_video(http, video_id, "failed")
        assert http.get(f"/v1/videos/{video_id}/content").status_code == 404
    assert failed["error"]["code"] == "video_generation_failed" and failed["progress"] == 100
    assert kinds(gw, account) == [("topup", Decimal(1)), ("hold", -PRICE), ("release", PRICE)]
    assert gw.balance(account) == Decimal(1)


def test_a_cancelled_video_is_free(gw: RunningGateway, sim: httpx.Client) -> None:
    account, key = gw.create_account("1")
    sim.post("/_sim/faults", json={"faults": ["stall"]}).raise_for_status()
    with client(gw, key) as http:
        video_id = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "slow"}).raise_for_status().json()["id"]
        wait_video(http, video_id, "in_progress")
        deleted = http.delete(f"/v1/videos/{video_id}").raise_for_status().json()
        assert deleted == {"id": video_id, "object": "video.deleted", "deleted": True}
        cancelled = wait_video(http, video_id, "failed")
        assert http.get(f"/v1/tasks/{video_id}").json()["status"] == "cancelled"
    assert cancelled["error"]["code"] == "cancelled"
    assert kinds(gw, account) == [("topup", Decimal(1)), ("hold", -PRICE), ("release", PRICE)]
    assert gw.balance(account) == Decimal(1)


def test_a_video_past_its_timeout_is_free(sim_url: str, sim: httpx.Client, tmp_path: Path) -> None:
    with _gateway(tmp_path, sim_url, video_timeout=1.0) as short:
        account, key = short.create_account("1")
        sim.post("/_sim/faults", json={"faults": ["stall"]}).raise_for_status()
        with client(short, key) as http:
            video_id = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "never"}).raise_for_status().json()["id"]
            failed = wait_video(http, video_id, "failed")
        assert failed["error"]["code"] == "video_timeout"
        assert kinds(short, account) == [("topup", Decimal(1)), ("hold", -PRICE), ("release", PRICE)]
        assert short.balance(account) == Decimal(1)


def test_the_cached_url_expires_with_the_media_retention(sim_url: str, tmp_path: Path) -> None:
    with _gateway(tmp_path, sim_url, media={"retention": 3.0}) as short:
        _, key = short.create_account("1")
        with client(short, key) as http:
            video_id = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "brief"}).raise_for_status().json()["id"]
            wait_video(http, video_id, "completed")
            url = http.get(f"/v1/tasks/{video_id}").json()["output_url"]
        first = httpx.get(url)
        assert first.status_code == 200 and first.content == SAMPLE_MP4
        def expired() -> httpx.Response | None:
            answer = httpx.get(url)
            return answer if answer.status_code == 410 else None

        assert "expired" in wait_for(expired, 20, 0.2).json()["error"]["message"]


def test_a_video_in_flight_holds_its_price_until_it_ends(gw: RunningGateway, sim: httpx.Client) -> None:
    account, key = gw.create_account("0.3")
    sim.post("/_sim/faults", json={"faults": ["stall"]}).raise_for_status()
    with client(gw, key) as http:
        first = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "one"}).raise_for_status().json()["id"]
        wait_video(http, first, "in_progress")
        refused = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "two"})
        assert refused.status_code == 402  # $0.1 available while $0.2 is held
        assert refused.json()["error"]["code"] == "insufficient_quota"
        assert gw.balance(account) == Decimal("0.1")
        http.post(f"/v1/tasks/{first}/cancel").raise_for_status()
        wait_video(http, first, "failed")
        second = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "two"}).raise_for_status().json()["id"]
        wait_video(http, second, "completed")
    assert gw.balance(account) == gw.ledger_sum(account) == Decimal("0.3") - PRICE


def test_an_idempotent_retry_gets_the_same_video_held_once(gw: RunningGateway, sim_url: str) -> None:
    account, key = gw.create_account("1")
    body = {"model": "cogvideox-3", "prompt": "again", "seconds": "10"}
    submitted = sim_submissions(sim_url)
    with client(gw, key) as http:
        first = http.post("/v1/videos", json=body, headers={"Idempotency-Key": "video-7"}).raise_for_status()
        retry = http.post("/v1/videos", json=body, headers={"Idempotency-Key": "video-7"}).raise_for_status()
        other = http.post("/v1/videos", json={**body, "prompt": "else"}, headers={"Idempotency-Key": "video-7"})
        assert retry.json()["id"] == first.json()["id"] and retry.headers["idempotent-replayed"] == "true"
        assert other.status_code == 409
        assert wait_video(http, first.json()["id"], "completed")["seconds"] == "10"
    assert sim_submissions(sim_url) - submitted == 1
    assert kinds(gw, account) == [("topup", Decimal(1)), ("hold", -PRICE), ("release", PRICE), ("charge", -PRICE)]


@pytest.mark.filterwarnings("ignore:The Sora API is scheduled:DeprecationWarning")
def test_an_uploaded_input_reference_reaches_the_provider_as_an_image_url(gw: RunningGateway, sim: httpx.Client) -> None:
    _, key = gw.create_account("1")
    png = render_png("reference", 16, 16)
    created = _clients.open(gw.base_url, key).videos.create(
        model="cogvideox-3", prompt="animate this", input_reference=("ref.png", png, "image/png"))
    submitted = wait_for(lambda: (sent := sim.get("/_sim/stats").json()["last_request"]) and sent.get("request_id") == created.id and sent)
    assert submitted["image_url"] == "data:image/png;base64," + base64.b64encode(png).decode()
    assert submitted["prompt"] == "animate this" and submitted["model"] == "cogvideox-3"


def test_a_video_in_flight_counts_against_the_keys_spend_cap(gw: RunningGateway, sim: httpx.Client) -> None:
    """The hold of a video in flight is spend toward the key's cap, in this process's cached totals and in a
    fresh read of the ledger (a refusal re-reads), until the video ends: delivered, it stays spent; failed,
    it is given back."""
    account, key = gw.create_account("5")
    [key_id] = [k["id"] for k in gw.admin.get(f"/admin/accounts/{account}/keys").raise_for_status().json()["data"]]
    gw.admin.patch(f"/admin/keys/{key_id}/limits", json={"spend_cap_usd": "0.3"}).raise_for_status()
    sim.post("/_sim/faults", json={"faults": ["stall"]}).raise_for_status()
    with client(gw, key) as http:
        first = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "one"}).raise_for_status().json()["id"]
        wait_video(http, first, "in_progress")
        refused = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "two"})
        assert refused.status_code == 402 and refused.json()["error"]["code"] == "key_spend_cap_exceeded"
        gw.gateway.limits.spend.invalidate()  # forget the cached totals: the ledger alone must say it
        again = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "two"})
        assert again.status_code == 402 and again.json()["error"]["code"] == "key_spend_cap_exceeded"
        http.post(f"/v1/tasks/{first}/cancel").raise_for_status()
        wait_video(http, first, "failed")
        gw.gateway.limits.spend.invalidate()  # the release is read from the ledger
        sim.post("/_sim/faults", json={"faults": []}).raise_for_status()
        second = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "two"}).raise_for_status().json()["id"]
        wait_video(http, second, "completed")
        third = http.post("/v1/videos", json={"model": "cogvideox-3", "prompt": "three"})
        assert third.status_code == 402 and third.json()["error"]["code"] == "key_spend_cap_exceeded"
    assert gw.balance(account) == gw.ledger_sum(account) == Decimal(5) - PRICE
