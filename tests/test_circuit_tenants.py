"""Issue 20.7: one tenant cannot pause a model for every tenant.

The breaker used to open after 5 consecutive failures, and a failing request was tried up to 3
times: two requests from account A whose content made the upstream answer 500 opened the circuit,
and account B's next normal call got 503 `upstream_unavailable` for 30 s. Now a request counts once
however often it is retried, A's failures pause the deployment for A alone, and only failures from
several accounts (at a high enough rate) pause it for everyone. One deployment (a simulator of its
own, to count the calls it gets), default breaker settings."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import RunningGateway
from tests.support.upstreams import (
    Upstream,
    custom_gateway,
    deployments,
    routed_config,
    simulators,
)

HELLO = [{"role": "user", "content": "hello"}]
POISON = {"x_sim": {"fault": "500"}}  # content this upstream answers with a 500


class One:
    def __init__(self, gw: RunningGateway, upstream: Upstream) -> None:
        self.gw, self.upstream = gw, upstream


@contextlib.contextmanager
def gateway_on_one_deployment(sim_url: str, tmp_path: Path, **server: Any) -> Iterator[One]:
    with simulators(1) as (upstream,):
        config = routed_config(sim_url, {"only": ("openai", upstream.url)},
                               {"glm-4.5-air": deployments(("only", "glm-4.5-air", 1))},
                               retry_backoff=0.01, **server)
        with custom_gateway(tmp_path, config) as gw:
            yield One(gw, upstream)


@pytest.fixture()
def one(sim_url: str, tmp_path: Path) -> Iterator[One]:
    with gateway_on_one_deployment(sim_url, tmp_path) as running:
        yield running


def chat(gw: RunningGateway, key: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": "glm-4.5-air", "messages": HELLO, "max_tokens": 5, **body}, timeout=30)


def test_one_accounts_poisoned_requests_cannot_deny_another_account(one: One) -> None:
    _, a = one.gw.create_account("1")
    _, b = one.gw.create_account("1")
    assert [chat(one.gw, a, **POISON).status_code for _ in range(8)] == [503] * 8
    response = chat(one.gw, b)
    assert response.status_code == 200, response.text  # the model is not paused for B


def test_an_accounts_own_circuit_opens_and_spares_the_upstream(one: One) -> None:
    _, a = one.gw.create_account("1")
    _, b = one.gw.create_account("1")
    for _ in range(5):  # 5 failed requests in a row (each tried 3 times): A's own circuit opens
        assert chat(one.gw, a, **POISON).status_code == 503
    calls = one.upstream.requests
    paused = chat(one.gw, a)
    assert paused.status_code == 503 and "paused" in paused.json()["error"]["message"]
    assert 1 <= int(paused.headers["retry-after"]) <= 30
    assert one.upstream.requests == calls  # refused without calling the upstream
    assert chat(one.gw, b).status_code == 200 and one.upstream.requests == calls + 1


def test_retries_of_one_request_count_once(sim_url: str, tmp_path: Path) -> None:
    """2 failed requests open an account's circuit here; one request tried 3 times is one failure."""
    with gateway_on_one_deployment(sim_url, tmp_path, circuit_failures=2, max_attempts=3) as gateway:
        _, a = gateway.gw.create_account("1")
        calls = gateway.upstream.requests
        assert chat(gateway.gw, a, **POISON).status_code == 503
        assert gateway.upstream.requests == calls + 3  # tried 3 times
        assert chat(gateway.gw, a).status_code == 200  # but it counted once: not paused


def test_failures_from_several_accounts_pause_the_deployment_for_everyone(one: One) -> None:
    keys = [one.gw.create_account("1")[1] for _ in range(4)]
    for key in keys[:3]:  # an upstream failing for every tenant: 3 accounts, 2 requests each
        for _ in range(2):
            assert chat(one.gw, key, **POISON).status_code == 503
    calls = one.upstream.requests
    paused = chat(one.gw, keys[3])  # a fourth account, which never failed, is spared the timeout
    assert paused.status_code == 503 and "paused" in paused.json()["error"]["message"]
    assert one.upstream.requests == calls
