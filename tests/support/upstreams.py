"""Gateways in front of several simulator instances, for routing, failover and health tests."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec

from runapi.config import ConfigFile
from runapi.http import create_app
from runapi.http.server_protocol import guarded_protocol
from runapi.simulator import create_simulator_app
from runapi.storage import upgrade
from tests.support.gateway import (
    RunningGateway,
    gateway_settings,
    simulator_config,
    sqlite_url,
)
from tests.support.servers import free_port, serve_asgi

FIRST, LAST = 1e9, 1e-9
"""Deployment weights that make the attempt order certain (the weighted shuffle puts FIRST
first with probability 1 − 1e-18)."""


class Upstream:
    """One simulator instance: its base URL and its control endpoints."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.control = httpx.Client(base_url=url, timeout=10)

    def faults(self, *faults: str) -> None:
        """Queue faults, consumed one per model request."""
        self.control.post("/_sim/faults", json={"faults": list(faults)}).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return dict(self.control.get("/_sim/stats").raise_for_status().json())

    @property
    def requests(self) -> int:
        return int(self.stats()["requests"])


@contextlib.contextmanager
def simulators(count: int) -> Iterator[list[Upstream]]:
    """`count` independent simulators, each with its own fault queue and stats."""
    with contextlib.ExitStack() as stack:
        upstreams = [Upstream(stack.enter_context(serve_asgi(create_simulator_app()))) for _ in range(count)]
        for upstream in upstreams:
            stack.callback(upstream.control.close)
        yield upstreams


def refused_url() -> str:
    """A loopback URL where nothing listens: connecting is refused."""
    return f"http://127.0.0.1:{free_port()}"


def routed_config(sim_url: str, providers: dict[str, tuple[str, str]], models: dict[str, dict[str, Any]],
                  **server: Any) -> ConfigFile:
    """The built-in providers on `sim_url`, plus `providers` {name: (protocol, host URL)} and `models` overrides."""
    base = simulator_config(sim_url, **server)
    extra = {name: {"base_url": f"{url}/v1" if protocol == "openai" else url, "protocol": protocol, "api_key_env": ""}
             for name, (protocol, url) in providers.items()}
    return msgspec.structs.replace(base, providers={**base.providers, **extra}, models=models)


def deployments(*routes: tuple[str, str, float]) -> dict[str, Any]:
    """A model override with these deployments: (provider, upstream model, weight)."""
    return {"deployments": [{"provider": p, "upstream_model": m, "weight": w} for p, m, w in routes]}


class FakeClock:
    """A monotonic clock that moves only when told (thread-safe: the gateway runs in another thread)."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@contextlib.contextmanager
def custom_gateway(directory: Path, config: ConfigFile, *, health_clock: FakeClock | None = None
                   ) -> Iterator[RunningGateway]:
    """A gateway on a fresh SQLite database with `config` (and optionally a controlled health clock)."""
    database_url = sqlite_url(directory)
    upgrade(database_url)
    settings = gateway_settings(database_url, config)
    app = create_app(settings, health_clock=health_clock) if health_clock else create_app(settings)
    with serve_asgi(app, http=guarded_protocol(settings.server)) as base_url:
        running = RunningGateway(base_url, settings, app)
        try:
            yield running
        finally:
            running.admin.close()
