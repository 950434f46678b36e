"""Cached output URLs: signed, expiring, fetchable without the API key, purged after expiry."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import sqlalchemy as sa

from runapi.storage import create_engine
from runapi.storage.schema import task_outputs
from tests.support.gateway import sqlite_url
from tests.support.tasks import (
    chat_task,
    client,
    fast_tasks,
    run_task_gateway,
    wait_finished,
    wait_for,
)


def kept_outputs(database_url: str) -> int:
    async def count() -> int:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(sa.select(sa.func.count()).select_from(task_outputs))).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(count())


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts._replace(query="&".join(f"{k}={v}" for k, v in query.items() if v is not None)).geturl()


def test_output_url_before_and_after_expiry(sim_url: str, tmp_path: Path) -> None:
    with run_task_gateway(sqlite_url(tmp_path), sim_url, fast_tasks(output_ttl=2.0, purge_interval=0.2)) as gw:
        _, key = gw.create_account("1")
        with client(gw, key) as http:
            done = wait_finished(http, http.post("/v1/tasks", json=chat_task()).json()["id"])
            other = wait_finished(http, http.post("/v1/tasks", json=chat_task()).json()["id"])
        url = done["output_url"]
        query = parse_qs(urlsplit(url).query)
        assert done["output_expires_at"] == int(query["expires"][0])

        fetched = httpx.get(url)  # no API key
        assert fetched.status_code == 200 and fetched.headers["content-type"] == "application/json"
        assert fetched.json() == done["result"]
        assert fetched.headers["cache-control"].startswith("private, max-age=")

        signature = query["signature"][0]
        tampered = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
        for bad in (with_query(url, signature=tampered),
                    with_query(url, expires=str(int(query["expires"][0]) + 3600)),
                    with_query(url, signature=""),
                    url.split("?")[0],
                    url.replace(done["id"], other["id"])):
            refused = httpx.get(bad)
            assert refused.status_code == 403, bad
            assert refused.json()["error"]["code"] == "invalid_signature"
        assert kept_outputs(gw.settings.database_url) == 2

        time.sleep(max(0.0, done["output_expires_at"] - time.time()) + 0.1)
        gone = httpx.get(url)
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "output_expired"
        assert httpx.get(with_query(url, signature=tampered)).status_code == 403  # still refused first
        wait_for(lambda: kept_outputs(gw.settings.database_url) == 0, 5)  # purged on schedule
        with client(gw, key) as http:
            after = http.get(f"/v1/tasks/{done['id']}").json()
        assert after["status"] == "succeeded" and after["result"] is None and after["output_url"] is None
        assert after["cost"] == done["cost"]


def test_output_secret_from_the_environment(sim_url: str, tmp_path: Path) -> None:
    secret = "operator-chosen-output-secret"
    with run_task_gateway(sqlite_url(tmp_path), sim_url, RUNAPI_OUTPUT_SECRET=secret) as gw:
        _, key = gw.create_account("1")
        with client(gw, key) as http:
            done = wait_finished(http, http.post("/v1/tasks", json=chat_task()).json()["id"])
    query = parse_qs(urlsplit(done["output_url"]).query)
    digest = hmac.new(secret.encode(), f"{done['id']}.{query['expires'][0]}".encode(), hashlib.sha256).digest()
    assert query["signature"][0] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_generated_secret_is_shared_by_instances(database_url: str, sim_url: str) -> None:
    with run_task_gateway(database_url, sim_url) as one, run_task_gateway(database_url, sim_url) as two:
        _, key = one.create_account("1")
        with client(one, key) as http:
            done = wait_finished(http, http.post("/v1/tasks", json=chat_task()).json()["id"])
        elsewhere = done["output_url"].replace(one.base_url, two.base_url)
        assert httpx.get(elsewhere).json() == done["result"]
