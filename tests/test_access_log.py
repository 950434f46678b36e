"""The request log of `runapi serve`: one JSON line per request with the call's facts, never a key; one
warning for a stream the upstream broke (the client was told), and none of uvicorn's "ASGI callable
returned without completing response"."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from runapi.catalog import builtin_catalog_data
from runapi.http.access_log import AccessEntry, loggable_path
from runapi.logs import EventLoopStreamHandler, JsonFormatter
from runapi.storage import upgrade
from tests.support.processes import RUNAPI, ChildProcess, clean_env
from tests.support.servers import free_port

ADMIN = "access-log-admin-token"


def _config(directory: Path, sim_url: str) -> Path:
    lines = []
    for name, spec in builtin_catalog_data()["providers"].items():
        base = f"{sim_url}/v1" if spec["protocol"] == "openai" else sim_url
        lines += [f"[providers.{name}]", f'base_url = "{base}"', 'api_key_env = ""', ""]
    lines += ["[tiers.free]", "requests_per_minute = 100000", "concurrent_requests = 1000", ""]
    path = directory / "runapi.toml"
    path.write_text("\n".join(lines))
    return path


@pytest.fixture()
def serve(tmp_path: Path, sim_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[str, ChildProcess]]:
    database = f"sqlite+aiosqlite:///{tmp_path / 'runapi.db'}"
    upgrade(database)
    port = free_port()
    env = clean_env(RUNAPI_DATABASE_URL=database, RUNAPI_CONFIG=str(_config(tmp_path, sim_url)),
                    RUNAPI_ADMIN_TOKEN=ADMIN)
    child = ChildProcess([*RUNAPI, "serve", "--port", str(port), *getattr(request, "param", [])], cwd=tmp_path,
                         env=env)
    try:
        child.wait_for("stderr", lambda lines: any("Application startup complete" in line for line in lines))
        yield f"http://127.0.0.1:{port}", child
    finally:
        child.stop()


def _account(root: str) -> str:
    admin = {"authorization": f"Bearer {ADMIN}"}
    account = httpx.post(f"{root}/admin/accounts", headers=admin, json={"name": "logged"}).raise_for_status().json()
    httpx.post(f"{root}/admin/accounts/{account['id']}/credits", headers=admin,
               json={"amount_usd": "5"}).raise_for_status()
    key: str = httpx.post(f"{root}/admin/accounts/{account['id']}/keys", headers=admin,
                          json={}).raise_for_status().json()["key"]
    return key


def _records(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line, parse_float=Decimal) for line in lines if line.startswith("{")]


def _access(lines: list[str]) -> list[dict[str, Any]]:
    return [r for r in _records(lines) if r["logger"] == "runapi.access"]


def test_json_lines_carry_the_call_and_never_a_key(serve: tuple[str, ChildProcess]) -> None:
    root, child = serve
    key = _account(root)
    auth = {"authorization": f"Bearer {key}"}
    chat = {"model": "glm-4.5-air", "messages": [{"role": "user", "content": "Hello"}]}

    plain = httpx.post(f"{root}/v1/chat/completions", headers=auth, json=chat, timeout=30).raise_for_status()
    with httpx.stream("POST", f"{root}/v1/chat/completions", headers=auth, timeout=30,
                      json={**chat, "stream": True, "stream_options": {"include_usage": True}}) as streamed:
        events = [line for line in streamed.iter_lines() if line.startswith("data: {")]
    stream_usage = json.loads(events[-1].removeprefix("data: "), parse_float=Decimal)["usage"]
    stream_id = streamed.headers["x-runapi-generation-id"]
    with httpx.stream("POST", f"{root}/v1/chat/completions", headers=auth, timeout=30,
                      json={**chat, "stream": True, "x_sim": {"fault": "cut"}}) as broken:
        tail = list(broken.iter_lines())[-3:]
    broken_id = broken.headers["x-runapi-generation-id"]
    assert any('"error"' in line for line in tail)  # the client was told
    refused = httpx.post(f"{root}/v1/chat/completions", headers={"authorization": f"Bearer {key}x"}, json=chat)
    assert refused.status_code == 401
    assert httpx.get(f"{root}/v1/models/{key}").status_code == 404
    assert httpx.get(f"{root}/models?q={key}").status_code == 200

    lines = child.wait_for("stderr", lambda ls: any(r["path"] == "/models" for r in _access(ls)))  # the last one
    assert not any(key in line for line in lines)  # not in a path, a query, a header or an error
    assert not any("Bearer" in line or "authorization" in line.lower() for line in lines)
    assert not any("ASGI callable returned without completing response" in line for line in lines)
    access = {(r["method"], r["path"], r["generation_id"] or r["status"]): r for r in _access(lines)}

    first = access["POST", "/v1/chat/completions", plain.json()["id"]]
    assert first["status"] == 200 and first["model"] == "glm-4.5-air" and first["outcome"] == "succeeded"
    assert Decimal(first["cost_usd"]) == Decimal(str(plain.json()["usage"]["cost"])) > 0
    assert first["overhead_ms"] == Decimal(plain.headers["x-runapi-overhead-ms"])
    assert first["latency_ms"] >= first["overhead_ms"] and first["client"] == "127.0.0.1"
    assert first["message"] == "POST /v1/chat/completions 200" and first["level"] == "info"

    second = access["POST", "/v1/chat/completions", stream_id]
    assert Decimal(second["cost_usd"]) == stream_usage["cost"] and second["outcome"] == "succeeded"

    cut = access["POST", "/v1/chat/completions", broken_id]
    assert cut["status"] == 200 and cut["outcome"] == "failed" and Decimal(cut["cost_usd"]) == 0
    warnings = [r for r in _records(lines) if r["level"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["generation_id"] == broken_id
    assert warnings[0]["event"] == "upstream_failed_mid_stream"
    assert "failed mid-stream" in warnings[0]["message"] and "The client got an error event" in warnings[0]["message"]

    assert access["POST", "/v1/chat/completions", 401]["model"] is None
    assert ("GET", "/v1/models/rk-[redacted]", 404) in access
    assert ("GET", "/models", 200) in access


@pytest.mark.parametrize("serve", [["--no-access-log"]], indirect=True)
def test_access_log_can_be_turned_off(serve: tuple[str, ChildProcess]) -> None:
    root, child = serve
    key = _account(root)
    with httpx.stream("POST", f"{root}/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": "glm-4.5-air", "stream": True, "x_sim": {"fault": "cut"},
                            "messages": [{"role": "user", "content": "Hello"}]}) as broken:
        list(broken.iter_lines())
    # The warning is still logged: once it is there, the request is over, and no access line came before it.
    lines = child.wait_for("stderr", lambda ls: any(r["level"] == "warning" for r in _records(ls)))
    assert _access(lines) == []


def test_a_readable_line_states_the_call() -> None:
    entry = AccessEntry({"method": "POST", "path": "/v1/chat/completions", "client": ("10.0.0.7", 5123)})
    entry.status, entry.overhead, entry.latency_ms = 200, b"0.312", 12.345
    entry.model, entry.generation_id, entry.outcome, entry.cost_nanos = "glm-4.6", "gen-1", "succeeded", 12_345
    assert str(entry) == "POST /v1/chat/completions 200 · glm-4.6 gen-1 · 12.3 ms (overhead 0.312 ms) · $0.000012345"
    entry.outcome = "failed"
    assert str(entry).endswith("· failed, not charged")
    gone = AccessEntry({"method": "GET", "path": "/health"})
    assert str(gone) == "GET /health - (client gone) · 0.0 ms"
    assert gone.log_fields()["status"] is None and gone.log_fields()["cost_usd"] is None


@pytest.mark.parametrize(("path", "logged"), [
    ("/v1/models/rk-AbC_12-x", "/v1/models/rk-[redacted]"),
    ("/a\nb", "/a\\nb"),  # no forged lines in text logs
    ("/" + "x" * 400, "/" + "x" * 299 + "…"),
    ("/v1/chat/completions", "/v1/chat/completions"),
])
def test_paths_are_logged_safely(path: str, logged: str) -> None:
    assert loggable_path(path) == logged


@pytest.mark.parametrize(("nanos", "text"), [(0, "0"), (7000, "0.000007"), (1_000_000_000, "1"),
                                             (-1_500_000_000, "-1.5"), (12_345, "0.000012345")])
def test_costs_are_exact_text(nanos: int, text: str) -> None:
    from runapi.http.access_log import usd_text

    assert usd_text(nanos) == text and Decimal(text) * 1_000_000_000 == nanos


class _CountingStream(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_the_handler_flushes_once_per_burst_on_an_event_loop() -> None:
    stream = _CountingStream()
    handler = EventLoopStreamHandler(stream, flush_delay=0)
    handler.setFormatter(JsonFormatter())
    record = logging.LogRecord("runapi.access", logging.INFO, "", 0, "line", (), None)

    async def burst() -> tuple[int, int]:
        for _ in range(3):
            handler.handle(record)
        before = stream.flushes
        await asyncio.sleep(0)  # the flush was scheduled for the next turn of the loop
        await asyncio.sleep(0)
        return before, stream.flushes

    assert asyncio.run(burst()) == (0, 1)
    assert len(stream.getvalue().splitlines()) == 3
    handler.handle(record)  # no running loop: flushed at once
    assert stream.flushes == 2
    handler.close()
