"""The simulator's media endpoints (embeddings, images, video jobs) over loopback, OpenAI SDK and raw httpx."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from runapi.simulator import create_simulator_app
from runapi.simulator.embeddings import embedding_vector
from tests.support.servers import serve_asgi

ZAI = "/api/paas/v4"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_asgi(create_simulator_app()) as url:
        yield url


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=5) as client:
        yield client


@pytest.fixture(autouse=True)
def _reset_simulator(http: httpx.Client) -> None:
    http.post("/_sim/reset").raise_for_status()


@pytest.fixture(scope="module")
def oai(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-sim", max_retries=0, timeout=5) as client:
        yield client


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(c * c for c in vector))


# --- embeddings -------------------------------------------------------------------------------


def test_sdk_embeddings_default_base64_decode_to_the_vectors_of_the_requested_dimension(oai: openai.OpenAI) -> None:
    answer = oai.embeddings.create(model="text-embedding-3-small", input=["red apple", "a green pear tree"],
                                   dimensions=64)
    assert [len(item.embedding) for item in answer.data] == [64, 64]
    assert [item.index for item in answer.data] == [0, 1]
    assert answer.usage.prompt_tokens == 2 + 4 == answer.usage.total_tokens
    expected = embedding_vector("red apple", 64)
    assert answer.data[0].embedding == pytest.approx(expected, abs=1e-6)  # float32 on the wire
    assert norm(answer.data[1].embedding) == pytest.approx(1.0, abs=1e-5)


def test_float_embeddings_are_deterministic_unit_vectors_and_differ_by_input(http: httpx.Client) -> None:
    def embed(text: str) -> list[float]:
        body = {"model": "text-embedding-3-small", "input": text, "encoding_format": "float", "dimensions": 256}
        answer = http.post("/v1/embeddings", json=body)
        assert answer.status_code == 200, answer.text
        vector: list[float] = answer.json()["data"][0]["embedding"]
        return vector

    first, again, other = embed("hello world"), embed("hello world"), embed("goodbye world")
    assert first == again and first != other
    assert len(first) == 256 and norm(first) == pytest.approx(1.0, abs=1e-12)


def test_base64_is_little_endian_float32(http: httpx.Client) -> None:
    body = {"model": "m", "input": "one two three", "encoding_format": "base64", "dimensions": 8}
    answer = http.post("/v1/embeddings", json=body).json()
    values = struct.unpack("<8f", base64.b64decode(answer["data"][0]["embedding"]))
    assert list(values) == pytest.approx(embedding_vector("one two three", 8), abs=1e-6)
    assert answer["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert answer["object"] == "list" and answer["model"] == "m"


def test_token_array_inputs_count_their_length(http: httpx.Client) -> None:
    body = {"model": "m", "input": [[1, 2, 3], [4, 5]], "encoding_format": "float", "dimensions": 4}
    answer = http.post("/v1/embeddings", json=body).json()
    assert answer["usage"]["prompt_tokens"] == 5
    assert answer["data"][1]["embedding"] == embedding_vector((4, 5), 4)


def test_default_dimensions_per_shape(http: httpx.Client) -> None:
    openai_answer = http.post("/v1/embeddings", json={"model": "m", "input": "x", "encoding_format": "float"}).json()
    zai_answer = http.post(f"{ZAI}/embeddings", json={"model": "embedding-3", "input": "x"}).json()
    assert len(openai_answer["data"][0]["embedding"]) == 1536
    assert len(zai_answer["data"][0]["embedding"]) == 2048


def test_zai_shape_floats_and_usage_with_completion_tokens(http: httpx.Client) -> None:
    answer = http.post(f"{ZAI}/embeddings", json={"model": "embedding-3", "input": ["a b", "c"], "dimensions": 256})
    assert answer.status_code == 200
    body = answer.json()
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}
    assert body["data"][0]["embedding"] == embedding_vector("a b", 256)
    assert body["model"] == "embedding-3"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "m", "input": ""}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": [1, "a"]}, "input"),
        ({"model": "m", "input": "a", "dimensions": 0}, "dimensions"),
        ({"model": "m", "input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "a"}, "model"),
    ],
)
def test_bad_embeddings_requests_are_400_naming_the_field(http: httpx.Client, body: dict[str, Any], field: str) -> None:
    answer = http.post("/v1/embeddings", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith(f"{field}:")
    zai = http.post(f"{ZAI}/embeddings", json=body)
    assert zai.status_code == 400 and zai.json()["error"]["code"] == "1214"


def test_embeddings_faults_in_each_shape(http: httpx.Client) -> None:
    http.post("/_sim/faults", json={"faults": ["429", "500"]}).raise_for_status()
    limited = http.post(f"{ZAI}/embeddings", json={"model": "embedding-3", "input": "a"})
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "1302"
    failed = http.post("/v1/embeddings", json={"model": "m", "input": "a"})
    assert failed.status_code == 500 and failed.json()["error"]["type"] == "server_error"
    overridden = http.post("/v1/embeddings", json={"model": "m", "input": "a", "x_sim": {"fault": "429"}})
    assert overridden.status_code == 429 and overridden.headers["retry-after"] == "1"


def test_zai_chat_completions_path_answers_in_the_openai_format(http: httpx.Client) -> None:
    answer = http.post(f"{ZAI}/chat/completions", json={"model": "glm-4.6", "messages": [{"role": "user",
                                                                                          "content": "hi"}]})
    assert answer.status_code == 200 and answer.json()["object"] == "chat.completion"
