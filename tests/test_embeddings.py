"""`POST /v1/embeddings` with the official openai SDK against the simulator: float and base64 vectors,
`dimensions`, token arrays, exact per-token billing (response = /v1/generations = ledger), schema 400s
before any hold, and a failed upstream call that is free."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from runapi.simulator.embeddings import embedding_vector
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.sdk_clients import SdkClients
from tests.support.sse import decode

M = Decimal(1_000_000)
PRICE = {"text-embedding-3-small": Decimal("0.02"), "embedding-3": Decimal("0.07")}
TEXTS = ["the quick brown fox", "jumps over the lazy dog again"]


@pytest.fixture(scope="module")
def gw(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """OpenAI's embedding model on the simulator's OpenAI shape; Zhipu's on its Z.ai shape."""
    directory: Path = tmp_path_factory.mktemp("embeddings")
    with run_gateway(sqlite_url(directory), sim_url, circuit_failures=0,
                     providers={"bigmodel": {"base_url": f"{sim_url}/api/paas/v4", "api_key_env": ""}}) as running:
        yield running


_clients = SdkClients()
_close_clients = _clients.closed_after_module()


def client(gw: RunningGateway, key: str) -> openai.OpenAI:
    return _clients.open(gw.base_url, key)


def float32(values: list[float]) -> list[float]:
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def generation(gw: RunningGateway, key: str, generation_id: str) -> dict[str, object]:
    response = httpx.get(f"{gw.base_url}/v1/generations/{generation_id}", headers={"authorization": f"Bearer {key}"})
    return dict(decode(response.raise_for_status().content))


def test_float_and_base64_vectors_dimensions_and_exact_cost(gw: RunningGateway) -> None:
    account, key = gw.create_account("1")
    sdk = client(gw, key)
    costs = []
    raw = sdk.embeddings.with_raw_response.create(model="text-embedding-3-small", input=TEXTS,
                                                  encoding_format="float")
    floats = raw.parse()
    assert [d.embedding for d in floats.data] == [embedding_vector(t, 1536) for t in TEXTS]
    assert floats.model == "text-embedding-3-small" and floats.usage.prompt_tokens == 10 == floats.usage.total_tokens
    body = decode(raw.http_response.content)
    assert body["usage"]["cost"] == 10 * PRICE["text-embedding-3-small"] / M
    row = generation(gw, key, raw.headers["x-runapi-generation-id"])
    assert row["status"] == "succeeded" and row["cost"] == body["usage"]["cost"] and row["estimated"] is False
    costs.append(body["usage"]["cost"])

    # The SDK's default: base64 of little-endian float32, decoded by the SDK; `dimensions` shortens.
    raw = sdk.embeddings.with_raw_response.create(model="text-embedding-3-small", input="the quick brown fox",
                                                  dimensions=256)
    short = raw.parse()
    assert short.data[0].embedding == float32(embedding_vector("the quick brown fox", 256))
    assert isinstance(decode(raw.http_response.content)["data"][0]["embedding"], str)
    costs.append(decode(raw.http_response.content)["usage"]["cost"])

    # Token arrays count their length.
    raw = sdk.embeddings.with_raw_response.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]],
                                                  encoding_format="float")
    assert raw.parse().usage.prompt_tokens == 5
    costs.append(decode(raw.http_response.content)["usage"]["cost"])
    assert gw.balance(account) == Decimal(1) - sum(costs) == gw.ledger_sum(account)
    charges = {e["generation_id"]: -Decimal(str(e["amount"])) for e in gw.ledger(account) if e["kind"] == "charge"}
    assert sorted(charges.values()) == sorted(costs)


def test_zai_embedding_model_answers_base64_from_an_upstream_that_sends_floats(gw: RunningGateway) -> None:
    account, key = gw.create_account("1")
    raw = client(gw, key).embeddings.with_raw_response.create(model="embedding-3", input=TEXTS, dimensions=512)
    answer = raw.parse()
    assert [d.embedding for d in answer.data] == [float32(embedding_vector(t, 512)) for t in TEXTS]
    assert [d.index for d in answer.data] == [0, 1] and answer.model == "embedding-3"
    cost = decode(raw.http_response.content)["usage"]["cost"]
    assert cost == 10 * PRICE["embedding-3"] / M
    assert generation(gw, key, raw.headers["x-runapi-generation-id"])["cost"] == cost
    assert gw.balance(account) == Decimal(1) - cost == gw.ledger_sum(account)


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "embedding-3", "input": "hello", "dimensions": 300}, "dimensions"),
    ({"model": "embedding-3", "input": ["a"] * 65}, "input"),
    ({"model": "text-embedding-3-small", "input": ""}, "input"),
    ({"model": "text-embedding-3-small", "input": "hi", "encoding_format": "int8"}, "encoding_format"),
    ({"model": "text-embedding-3-small"}, "input"),
    ({"input": "hi"}, "model"),
    ({"model": 5, "input": "hi"}, "$.model"),
    ({"model": "glm-4.5-air", "input": "hi"}, "model"),
])
def test_a_request_that_breaks_the_schema_is_refused_before_any_hold(gw: RunningGateway, body: dict[str, object],
                                                                     param: str) -> None:
    account, key = gw.create_account("0")  # no credit at all: a hold would answer 402, not 400
    response = httpx.post(f"{gw.base_url}/v1/embeddings", json=body, headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert gw.admin.get("/admin/generations", params={"account_id": account}).json()["data"] == []


def test_a_failed_upstream_call_is_recorded_and_free(gw: RunningGateway) -> None:
    account, key = gw.create_account("1")
    response = httpx.post(f"{gw.base_url}/v1/embeddings", headers={"authorization": f"Bearer {key}"},
                          json={"model": "text-embedding-3-small", "input": "hi", "x_sim": {"fault": "500"}})
    assert response.status_code >= 500
    rows = gw.admin.get("/admin/generations", params={"account_id": account}).json()["data"]
    assert [r["status"] for r in rows] == ["failed"] and Decimal(str(rows[0]["cost"])) == 0
    assert gw.balance(account) == Decimal(1) == gw.ledger_sum(account)


def test_not_enough_credit_is_402_and_nothing_is_called(gw: RunningGateway) -> None:
    _, key = gw.create_account("0")
    with pytest.raises(openai.APIStatusError) as caught:
        client(gw, key).embeddings.create(model="text-embedding-3-small", input="hello")
    assert caught.value.status_code == 402
