"""/metrics of a real gateway after a few settled generations: counters, histogram buckets, the gauge."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from runapi.simulator import prompt_tokens
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url

MESSAGES = [{"role": "user", "content": "hello there"}]
LATENCY_LE = ["0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5", "5.0", "7.5",
              "10.0", "+Inf"]
OVERHEAD_LE = ["0.0002", "0.0005", "0.001", "0.002", "0.005", "0.01", "0.05", "0.1", "+Inf"]


@pytest.fixture()
def fresh(sim_url: str, tmp_path: Path) -> Iterator[RunningGateway]:
    """A gateway of its own: its metrics start from zero. One attempt per call, so a fault is a failed call."""
    with run_gateway(sqlite_url(tmp_path), sim_url, circuit_failures=0, max_attempts=1) as running:
        yield running


def chat(gw: RunningGateway, key: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": "glm-4.5-air", "messages": MESSAGES, **body}, timeout=30)


def scrape(gw: RunningGateway) -> tuple[str, dict[str, Any]]:
    response = httpx.get(f"{gw.base_url}/metrics", timeout=10).raise_for_status()
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text, {f.name: f for f in text_string_to_metric_families(response.text)}


def values(family: Any, name: str, **labels: str) -> list[Sample]:
    return [s for s in family.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def value(family: Any, name: str, **labels: str) -> float:
    [sample] = values(family, name, **labels)
    return float(sample.value)


def buckets(family: Any, name: str, **labels: str) -> list[tuple[str, float]]:
    return [(s.labels["le"], float(s.value)) for s in values(family, name + "_bucket", **labels)]


def test_metrics_count_settled_generations(fresh: RunningGateway) -> None:
    text, families = scrape(fresh)
    assert "# TYPE runapi_generations_total counter" in text and "runapi_generations_total{" not in text
    assert [count for _, count in buckets(families["runapi_gateway_overhead_seconds"],
                                          "runapi_gateway_overhead_seconds")] == [0.0] * len(OVERHEAD_LE)

    account, key = fresh.create_account("1")
    costs = []
    for body in ({}, {}, {"x_sim": {"cached_tokens": 3}}):
        response = chat(fresh, key, **body)
        assert response.status_code == 200
        costs.append(Decimal(str(response.json()["usage"]["cost"])))
    assert chat(fresh, key, x_sim={"fault": "500"}).status_code >= 500
    _, families = scrape(fresh)

    generations = families["runapi_generations"]
    assert generations.type == "counter" and generations.documentation == "Settled generations"
    assert value(generations, "runapi_generations_total", model="glm-4.5-air", status="succeeded") == 3
    assert value(generations, "runapi_generations_total", model="glm-4.5-air", status="failed") == 1
    assert len(values(families["runapi_generations_created"], "runapi_generations_created")) == 2  # as before

    tokens = families["runapi_tokens"]  # failed calls bill no tokens
    uncached_input = 3 * prompt_tokens(MESSAGES) - 3
    assert value(tokens, "runapi_tokens_total", model="glm-4.5-air", kind="input") == uncached_input
    assert value(tokens, "runapi_tokens_total", model="glm-4.5-air", kind="output") == 3 * 12
    assert value(tokens, "runapi_tokens_total", model="glm-4.5-air", kind="cache_read") == 3
    revenue = families["runapi_charged_usd"]
    assert revenue.documentation == "USD charged (exact figures live in the ledger)"
    assert value(revenue, "runapi_charged_usd_total", model="glm-4.5-air") == pytest.approx(float(sum(costs)))
    assert fresh.balance(account) == Decimal(1) - sum(costs)

    latency = families["runapi_generation_latency_seconds"]
    assert latency.type == "histogram"
    latency_buckets = buckets(latency, "runapi_generation_latency_seconds", model="glm-4.5-air")
    assert [le for le, _ in latency_buckets] == LATENCY_LE
    counts = [count for _, count in latency_buckets]
    assert counts == sorted(counts) and counts[-1] == 3  # cumulative; +Inf holds every succeeded call
    assert value(latency, "runapi_generation_latency_seconds_count", model="glm-4.5-air") == 3
    assert value(latency, "runapi_generation_latency_seconds_sum", model="glm-4.5-air") > 0

    overhead = families["runapi_gateway_overhead_seconds"]
    overhead_buckets = buckets(overhead, "runapi_gateway_overhead_seconds")
    assert [le for le, _ in overhead_buckets] == OVERHEAD_LE
    counts = [count for _, count in overhead_buckets]
    total = value(overhead, "runapi_gateway_overhead_seconds_count")
    assert counts == sorted(counts) and counts[-1] == total == 4  # failed calls too
    assert value(overhead, "runapi_gateway_overhead_seconds_sum") > 0

    assert value(families["runapi_pending_settlements"], "runapi_pending_settlements") >= 0

    assert chat(fresh, key).status_code == 200  # counters only go up
    _, families = scrape(fresh)
    assert value(families["runapi_generations"], "runapi_generations_total",
                 model="glm-4.5-air", status="succeeded") == 4
    assert value(families["runapi_generation_latency_seconds"], "runapi_generation_latency_seconds_count",
                 model="glm-4.5-air") == 4
