"""Shared fixtures: a real simulator and a real gateway on loopback (SQLite), and PostgreSQL databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runapi.simulator import create_simulator_app
from tests.support.browser import browser  # noqa: F401 - the session's one Chromium, for web tests
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.postgres import temporary_database
from tests.support.servers import serve_asgi


@pytest.fixture(scope="session")
def sim_url() -> Iterator[str]:
    with serve_asgi(create_simulator_app()) as url:
        yield url


@pytest.fixture()
def sim(sim_url: str) -> Iterator[httpx.Client]:
    """A client for the simulator's control endpoints; the fault queue is cleared around each test."""
    with httpx.Client(base_url=sim_url, timeout=10) as client:
        client.post("/_sim/reset").raise_for_status()
        yield client
        client.post("/_sim/reset").raise_for_status()


@pytest.fixture(scope="session")
def gateway(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """One gateway on SQLite for the session; tests isolate themselves with fresh accounts."""
    directory = tmp_path_factory.mktemp("gateway")
    # No circuit breaker here: tests inject faults on purpose and must not pause the model for the next test.
    with run_gateway(sqlite_url(directory), sim_url, circuit_failures=0) as running:
        yield running


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
    else:
        with temporary_database() as url:
            yield url
