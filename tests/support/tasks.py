"""Gateways with fast task settings, a real webhook receiver on loopback, and waiting helpers."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import msgspec

from runapi.config import TaskSettings
from runapi.http import create_app
from runapi.storage import upgrade
from tests.support.gateway import RunningGateway, gateway_settings, simulator_config
from tests.support.servers import serve_asgi

T = TypeVar("T")

FAST = TaskSettings(workers=4, poll_interval=0.05, lease=3.0, output_ttl=3600.0, purge_interval=0.2,
                    webhook_timeout=5.0, webhook_backoff=0.05, webhook_backoff_max=0.2, webhook_retry_window=10.0,
                    webhook_allow=("127.0.0.1",))
MESSAGES = [{"role": "user", "content": "hello there"}]


def fast_tasks(**overrides: Any) -> TaskSettings:
    return msgspec.structs.replace(FAST, **overrides)


@contextlib.contextmanager
def run_task_gateway(database_url: str, sim_url: str, tasks: TaskSettings = FAST,
                     server: dict[str, Any] | None = None, providers: dict[str, dict[str, Any]] | None = None,
                     media: dict[str, Any] | None = None, **env: str) -> Iterator[RunningGateway]:
    """A gateway (tasks on) in front of the simulator; `server` sets `[server]` settings, `providers` and
    `media` those tables (see `simulator_config`), `env` adds RUNAPI_* variables."""
    upgrade(database_url)
    config = msgspec.structs.replace(simulator_config(sim_url, providers=providers, media=media, **(server or {})),
                                     tasks=tasks)
    settings = gateway_settings(database_url, config, **env)
    app = create_app(settings)
    with serve_asgi(app) as base_url:
        running = RunningGateway(base_url, settings, app)
        try:
            yield running
        finally:
            running.admin.close()


def wait_for(probe: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {probe}")
        time.sleep(interval)


def client(gw: RunningGateway, key: str) -> httpx.Client:
    return httpx.Client(base_url=gw.base_url, headers={"authorization": f"Bearer {key}"}, timeout=30)


def chat_task(**extra: Any) -> dict[str, Any]:
    """A `POST /v1/tasks` body for glm-4.5-air; `x_sim` knobs go in `extra["x_sim"]`."""
    task_input: dict[str, Any] = {"messages": MESSAGES}
    if "x_sim" in extra:
        task_input["x_sim"] = extra.pop("x_sim")
    return {"model": "glm-4.5-air", "input": task_input, **extra}


def wait_finished(http: httpx.Client, task_id: str, timeout: float = 10.0) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        task: dict[str, Any] = http.get(f"/v1/tasks/{task_id}").raise_for_status().json()
        return task if task["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(probe, timeout)


class Receiver:
    """A webhook receiver (ASGI): records every request; answers `fail_first` of them with 500."""

    def __init__(self, fail_first: int = 0, status: int = 500) -> None:
        self.fail_first = fail_first
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with self._lock:
            self.requests.append((headers, body))
            failing = len(self.requests) <= self.fail_first
        status = self.status if failing else 204
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def for_task(self, task_id: str) -> list[tuple[dict[str, str], bytes]]:
        with self._lock:
            return [(h, b) for h, b in self.requests if task_id.encode() in b]


@contextlib.contextmanager
def serve_receiver(receiver: Receiver) -> Iterator[str]:
    """Serve a receiver on loopback; yields its hook URL."""
    with serve_asgi(receiver) as base_url:
        yield f"{base_url}/hook"
