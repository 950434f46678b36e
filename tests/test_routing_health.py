"""Circuit breakers and model status from real traffic, with the health clock under the test's control."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from runapi.pipeline.circuit import CircuitBreakers
from runapi.pipeline.failover import backoff_delay
from tests.support.gateway import RunningGateway
from tests.support.upstreams import (
    FIRST,
    LAST,
    FakeClock,
    Upstream,
    custom_gateway,
    deployments,
    routed_config,
    simulators,
)

HELLO = [{"role": "user", "content": "hello there"}]


def chat(gw: RunningGateway, key: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": "glm-4.5-air", "messages": HELLO, **body}, timeout=30)


def model(gw: RunningGateway, model_id: str = "glm-4.5-air") -> dict[str, Any]:
    return dict(httpx.get(f"{gw.base_url}/v1/models/{model_id}").raise_for_status().json())


def listed_status(gw: RunningGateway, model_id: str = "glm-4.5-air") -> str:
    data = httpx.get(f"{gw.base_url}/v1/models").raise_for_status().json()["data"]
    return str(next(m["status"] for m in data if m["id"] == model_id))


class Two:
    def __init__(self, gw: RunningGateway, clock: FakeClock, a: Upstream, b: Upstream) -> None:
        self.gw, self.clock, self.a, self.b = gw, clock, a, b


@pytest.fixture()
def two(sim_url: str, tmp_path: Path) -> Iterator[Two]:
    """glm-4.5-air on A (tried first) and B; circuits open after 2 failed requests and cool down for 30 s.
    One tenant may open them for everyone here (`circuit_accounts = 1`, as for a single-team gateway);
    the default asks for failures from several accounts (tests/test_circuit_tenants.py)."""
    clock = FakeClock()
    with simulators(2) as (a, b):
        config = routed_config(
            sim_url, {"sim-a": ("openai", a.url), "sim-b": ("openai", b.url)},
            {"glm-4.5-air": deployments(("sim-a", "glm-4.5-air", FIRST), ("sim-b", "glm-4.5-air", LAST))},
            circuit_failures=2, circuit_accounts=1, circuit_cooldown=30.0, retry_backoff=0.01)
        with custom_gateway(tmp_path, config, health_clock=clock) as gw:
            yield Two(gw, clock, a, b)


def deployment_view(gw: RunningGateway, provider: str) -> dict[str, Any]:
    return next(d for d in model(gw)["health"]["deployments"] if d["provider"] == provider)


def test_circuit_opens_after_repeated_failures_and_closes_after_recovery(two: Two) -> None:
    _, key = two.gw.create_account("1")
    two.a.faults("500", "500")
    assert [chat(two.gw, key).status_code for _ in range(2)] == [200, 200]  # answered by B both times
    assert (two.a.requests, two.b.requests) == (2, 2)
    assert deployment_view(two.gw, "sim-a")["circuit"] == "open"
    assert deployment_view(two.gw, "sim-a")["status"] == "down"
    assert model(two.gw)["status"] == "operational"  # one of two deployments down, but callers are served

    assert chat(two.gw, key).status_code == 200
    assert (two.a.requests, two.b.requests) == (2, 3)  # open: A is not even tried

    two.clock.advance(31)  # half-open: the next call is a trial on A, which fails: open again
    assert deployment_view(two.gw, "sim-a")["circuit"] == "half_open"
    two.a.faults("500")
    assert chat(two.gw, key).status_code == 200
    assert (two.a.requests, two.b.requests) == (3, 4)
    assert deployment_view(two.gw, "sim-a")["circuit"] == "open"
    assert chat(two.gw, key).status_code == 200 and two.a.requests == 3

    two.clock.advance(31)  # the next trial succeeds: closed
    assert chat(two.gw, key).status_code == 200
    assert (two.a.requests, two.b.requests) == (4, 5)
    assert deployment_view(two.gw, "sim-a")["circuit"] == "closed"
    assert chat(two.gw, key).status_code == 200 and two.a.requests == 5


def test_every_circuit_open_fails_fast_and_the_model_comes_back(two: Two) -> None:
    account, key = two.gw.create_account("1")
    for _ in range(2):  # each call: A fails, B fails, A fails again (3 attempts)
        assert chat(two.gw, key, x_sim={"fault": "500"}).status_code == 503
    assert {d["circuit"] for d in model(two.gw)["health"]["deployments"]} == {"open"}
    assert model(two.gw)["status"] == listed_status(two.gw) == "down"

    calls = two.a.requests + two.b.requests
    response = chat(two.gw, key)
    assert response.status_code == 503 and "paused" in response.json()["error"]["message"]
    assert 1 <= int(response.headers["retry-after"]) <= 30
    assert two.a.requests + two.b.requests == calls  # refused without calling anyone
    assert two.gw.balance(account) == Decimal(1)

    two.clock.advance(31)
    assert chat(two.gw, key).status_code == 200  # the trial succeeds
    assert deployment_view(two.gw, "sim-a")["circuit"] == "closed"
    two.clock.advance(301)  # the failures leave the 5-minute window
    assert model(two.gw)["status"] == listed_status(two.gw) == "operational"


def test_model_status_degraded_down_and_back(sim_url: str, tmp_path: Path) -> None:
    clock = FakeClock()
    config = routed_config(sim_url, {}, {}, circuit_failures=0, max_attempts=1)
    with custom_gateway(tmp_path, config, health_clock=clock) as gw:
        _, key = gw.create_account("1")
        assert model(gw)["status"] == "operational" and model(gw)["health"]["samples"] == 0
        for fault in ("", "", "500", "500"):
            chat(gw, key, x_sim={"fault": fault})
        health = model(gw)["health"]
        assert (health["success_rate"], health["samples"]) == (0.5, 4)
        assert model(gw)["status"] == listed_status(gw) == "degraded"
        assert health["p50_latency_ms"] > 0 and health["deployments"][0]["status"] == "degraded"

        for _ in range(2):
            chat(gw, key, x_sim={"fault": "500"})
        assert model(gw)["status"] == listed_status(gw) == "down"  # 2 of 6 succeeded

        clock.advance(301)  # the window slides past every sample
        assert model(gw)["status"] == "operational" and model(gw)["health"]["samples"] == 0
        assert chat(gw, key).status_code == 200
        assert model(gw)["status"] == listed_status(gw) == "operational"


def test_circuit_breaker_rules() -> None:
    now = [0.0]
    circuits = CircuitBreakers(threshold=3, cooldown=10, clock=lambda: now[0], accounts=2, window=60)
    for _ in range(2):
        circuits.failed("d", "a")
    circuits.succeeded("d", "a")  # a success resets the account's count of consecutive failures
    for _ in range(2):
        circuits.failed("d", "a")
    assert circuits.state("d") == "closed" and circuits.allow("d", "a")
    circuits.failed("d", "a")  # 3 in a row: open for account a only
    assert circuits.state("d") == "closed" and not circuits.allow("d", "a") and circuits.allow("d", "b")
    assert circuits.retry_in("d", "a") == 10 and circuits.retry_in("d", "b") == 0
    circuits.failed("d", "b")  # 6 failures of 7 requests in the window, from 2 accounts: open for everyone
    assert circuits.state("d") == "open" and not circuits.allow("d", "b") and not circuits.allow("d", "c")
    now[0] = 10
    assert circuits.state("d") == "half_open"
    assert circuits.allow("d", "c") and not circuits.allow("d", "c")  # one trial at a time
    now[0] = 21  # a trial that never reported back frees the slot after a cooldown
    assert circuits.allow("d", "c")
    circuits.failed("d", "c")  # the trial failed, and the window still holds failures of several accounts
    assert circuits.state("d") == "open"
    now[0] = 100  # those failures left the window: the next failed trial closes instead
    assert circuits.allow("d", "c")
    circuits.failed("d", "c")
    assert circuits.state("d") == "closed"

    busy = CircuitBreakers(threshold=3, cooldown=10, clock=lambda: now[0], accounts=2, window=60)
    for _ in range(10):
        busy.succeeded("d", "ok")
    for account in ("a", "b", "a", "b"):
        busy.failed("d", account)  # 4 of 14 requests failed: under the failure rate
    assert busy.state("d") == "closed"
    disabled = CircuitBreakers(threshold=0, cooldown=10, clock=lambda: now[0])
    for _ in range(100):
        disabled.failed("d", "a")
    assert disabled.allow("d", "a")


@pytest.mark.parametrize(("retry", "jitter", "delay"), [
    (1, 1.0, 0.1), (2, 1.0, 0.2), (3, 1.0, 0.4), (1, 0.0, 0.05), (10, 1.0, 2.0), (10, 0.0, 1.0)])
def test_backoff_doubles_with_jitter_up_to_a_cap(retry: int, jitter: float, delay: float) -> None:
    assert backoff_delay(retry, base=0.1, cap=2.0, jitter=jitter) == pytest.approx(delay)
