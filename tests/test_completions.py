"""`POST /v1/completions` (legacy text completions) through a real gateway and simulator, with the openai SDK,
and the OpenAI-shaped 404 of an unknown path under `/v1/`."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from runapi.protocols.openai import CompletionRequest
from runapi.simulator import reply_words
from tests.support.charges import charged_generations, price
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.sdk_clients import SdkClients
from tests.support.sse import decode, sse_data

ANSWER = " ".join(reply_words(12))


@pytest.fixture(scope="module")
def text_gateway(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """A gateway where glm-4.5-air's upstream (the simulator) is marked as serving text completions, and so is
    claude-haiku-4-5's, though its only deployment speaks Anthropic's protocol (which has no such endpoint)."""
    directory: Path = tmp_path_factory.mktemp("completions")
    with run_gateway(sqlite_url(directory), sim_url, circuit_failures=0,
                     models={"glm-4.5-air": {"text_completions": True},
                             "claude-haiku-4-5": {"text_completions": True}}) as running:
        yield running


_clients = SdkClients()
_close_clients = _clients.closed_after_module()


def client(gw: RunningGateway, key: str) -> openai.OpenAI:
    return _clients.open(gw.base_url, key)


def test_text_completion_is_relayed_and_charged_exactly(text_gateway: RunningGateway, sim: httpx.Client) -> None:
    account, key = text_gateway.create_account("1")
    with client(text_gateway, key) as sdk:
        raw = sdk.completions.with_raw_response.create(
            model="glm-4.5-air", prompt="Once upon a time", max_tokens=50, extra_body={"echo": False, "seed": 7})
    completion = raw.parse()
    body = decode(raw.http_response.content)
    assert completion.object == "text_completion" and completion.choices[0].text == ANSWER
    assert completion.id == raw.headers["x-runapi-generation-id"] and completion.model == "glm-4.5-air"
    assert completion.usage is not None and (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 12)
    stats = sim.get("/_sim/stats").json()
    assert stats["last_target"] == "/v1/completions"  # the body went through as sent, model renamed
    assert stats["last_request"]["prompt"] == "Once upon a time" and stats["last_request"]["seed"] == 7
    [row] = charged_generations(text_gateway, account, key, Decimal(1))
    assert row["id"] == completion.id and body["usage"]["cost"] == row["cost"] == price("glm-4.5-air", row["usage"])


def test_streamed_text_completion_reports_usage_and_cost(text_gateway: RunningGateway) -> None:
    account, key = text_gateway.create_account("1")
    with httpx.stream("POST", f"{text_gateway.base_url}/v1/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": "glm-4.5-air", "prompt": ["one two", "three"], "stream": True,
                            "stream_options": {"include_usage": True}}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    data = sse_data(text)
    assert data[-1] == "[DONE]"
    events = [decode(item) for item in data[:-1]]
    generation_id = response.headers["x-runapi-generation-id"]
    assert {event["id"] for event in events} == {generation_id}
    by_choice = {index: "".join(e["choices"][0]["text"] for e in events if e["choices"] and e["choices"][0]["index"] == index)
                 for index in (0, 1)}
    assert by_choice == {0: ANSWER, 1: ANSWER}  # one choice per prompt
    [usage] = [event["usage"] for event in events if event.get("usage")]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (3, 24)
    [row] = charged_generations(text_gateway, account, key, Decimal(1))
    assert row["id"] == generation_id and usage["cost"] == row["cost"]


def test_stream_without_usage_asked_is_still_charged_exactly(text_gateway: RunningGateway) -> None:
    account, key = text_gateway.create_account("1")
    with client(text_gateway, key) as sdk:
        chunks = list(sdk.completions.create(model="glm-4.5-air", prompt="hi", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == ANSWER
    assert all(c.usage is None for c in chunks)  # as the client asked; the gateway asked upstream for it
    [row] = charged_generations(text_gateway, account, key, Decimal(1))
    assert row["usage"]["output_tokens"] == 12


def test_a_failed_upstream_is_not_charged(text_gateway: RunningGateway, sim: httpx.Client) -> None:
    account, key = text_gateway.create_account("1")
    sim.post("/_sim/faults", json={"faults": ["500", "500", "500", "500"]}).raise_for_status()
    response = httpx.post(f"{text_gateway.base_url}/v1/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": "glm-4.5-air", "prompt": "hi"}, timeout=30)
    assert response.status_code in (502, 503) and response.json()["error"]["type"] in ("upstream_error", "server_error")
    assert charged_generations(text_gateway, account, key, Decimal(1)) == []


def test_an_upstream_error_mid_stream_ends_the_stream_and_is_free(text_gateway: RunningGateway,
                                                                  sim: httpx.Client) -> None:
    account, key = text_gateway.create_account("1")
    sim.post("/_sim/faults", json={"faults": ["error_event"]}).raise_for_status()
    with httpx.stream("POST", f"{text_gateway.base_url}/v1/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": "glm-4.5-air", "prompt": "hi", "stream": True}) as response:
        data = sse_data(response.read().decode())
    assert response.status_code == 200 and data[0].startswith('{"id"') and "[DONE]" not in data
    assert decode(data[-1])["error"]["type"] == "upstream_error"
    generation = httpx.get(f"{text_gateway.base_url}/v1/generations/{response.headers['x-runapi-generation-id']}",
                           headers={"authorization": f"Bearer {key}"}).json()
    assert generation["status"] == "failed" and charged_generations(text_gateway, account, key, Decimal(1)) == []


@pytest.mark.parametrize("model", ["glm-4.6", "claude-sonnet-5-5"])
def test_a_model_without_text_completions_names_the_alternatives(gateway: RunningGateway, sim: httpx.Client,
                                                                 model: str) -> None:
    account, key = gateway.create_account("1")
    with client(gateway, key) as sdk, pytest.raises(openai.NotFoundError) as caught:
        sdk.completions.create(model=model, prompt="hi")
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "unsupported_endpoint" and error["param"] == "model"
    assert "/v1/chat/completions" in error["message"] and "/v1/responses" in error["message"]
    assert sim.get("/_sim/stats").json()["requests"] == 0  # refused before any upstream call or hold
    assert gateway.ledger(account)[-1]["kind"] != "charge" and gateway.balance(account) == Decimal(1)


@pytest.mark.parametrize(("prompt", "n", "best_of", "suffix", "texts", "choices"), [
    ("Once upon", None, None, None, ["Once upon"], 1),
    (["a", "bb"], 2, None, None, ["a", "bb"], 4),  # n choices per prompt
    (["a", "bb"], 2, 5, None, ["a", "bb"], 10),  # best_of are generated (and billed), n returned
    ([1, 2, 3], None, None, "end", ["xxx", "end"], 1),  # token IDs: a byte each, at least what they count
    ([[1, 2], [3]], None, None, None, ["xx", "x"], 2),
])
def test_the_hold_covers_every_prompt_and_choice(prompt: object, n: int | None, best_of: int | None,
                                                 suffix: str | None, texts: list[str], choices: int) -> None:
    view = CompletionRequest(model="m", prompt=prompt, n=n, best_of=best_of, suffix=suffix,  # type: ignore[arg-type]
                             max_tokens=7).chat_view()
    assert [m.content for m in view.messages] == texts and view.n == choices
    assert view.output_limit(100) == 7 * choices


def test_a_call_whose_worst_case_exceeds_the_credit_is_refused(text_gateway: RunningGateway, sim: httpx.Client) -> None:
    account, key = text_gateway.create_account("0.005")
    url, auth = f"{text_gateway.base_url}/v1/completions", {"authorization": f"Bearer {key}"}
    # 2 prompts × best_of 8 × 1,000 tokens at $0.55 per 1M output tokens: $0.0088 held, more than $0.005
    # (without best_of, $0.0011: the same call with n=1 passes)
    refused = httpx.post(url, headers=auth, json={"model": "glm-4.5-air", "prompt": ["a", "b"], "best_of": 8,
                                                  "max_tokens": 1000})
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "insufficient_quota"
    assert sim.get("/_sim/stats").json()["requests"] == 0
    assert httpx.post(url, headers=auth, json={"model": "glm-4.5-air", "prompt": ["a", "b"], "max_tokens": 1000}
                      ).status_code == 200
    assert len(charged_generations(text_gateway, account, key, Decimal("0.005"))) == 1


def test_an_anthropic_protocol_model_is_refused_even_when_flagged(text_gateway: RunningGateway,
                                                                   sim: httpx.Client) -> None:
    _, key = text_gateway.create_account("1")
    response = httpx.post(f"{text_gateway.base_url}/v1/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": "claude-haiku-4-5", "prompt": "hi"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "unsupported_endpoint"
    assert sim.get("/_sim/stats").json()["requests"] == 0


def test_bad_completion_bodies_name_the_field(text_gateway: RunningGateway) -> None:
    _, key = text_gateway.create_account("1")
    url, auth = f"{text_gateway.base_url}/v1/completions", {"authorization": f"Bearer {key}"}
    missing = httpx.post(url, headers=auth, json={"model": "glm-4.5-air"})
    assert missing.status_code == 400 and "prompt" in missing.json()["error"]["message"]
    bad = httpx.post(url, headers=auth, json={"model": "glm-4.5-air", "prompt": "x", "max_tokens": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "$.max_tokens"
    unknown = httpx.post(url, headers=auth, json={"model": "no-such-model", "prompt": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


def test_an_unknown_v1_path_lists_the_endpoints(gateway: RunningGateway) -> None:
    _, key = gateway.create_account("1")
    response = httpx.post(f"{gateway.base_url}/v1/chat/complete", headers={"authorization": f"Bearer {key}"},
                          json={})
    assert response.status_code == 404 and response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "unknown_url"
    assert "POST /v1/chat/complete" in error["message"] and "/docs" in error["message"]
    for endpoint in ("POST /v1/chat/completions", "POST /v1/completions", "POST /v1/responses", "POST /v1/messages",
                     "GET /v1/models", "GET /v1/responses/{response_id}",
                     "GET /v1/generations/{generation_id}"):
        assert endpoint in error["message"]
    assert "/admin" not in error["message"]  # only the /v1/ surface is listed
    assert httpx.get(f"{gateway.base_url}/v1").json()["error"]["code"] == "unknown_url"
    assert httpx.get(f"{gateway.base_url}/nothing").json()["error"]["code"] is None  # outside /v1/: a plain 404
    wrong_method = httpx.get(f"{gateway.base_url}/v1/completions")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
