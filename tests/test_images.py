"""`POST /v1/images/generations` with the official openai SDK against the simulator: images kept in the
media store and answered as our signed URLs (fetched without an API key) or base64, exact per-image
billing (response = /v1/generations = ledger), the worst-case hold, filtered and undeliverable images
free, schema 400s before any hold."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from runapi.simulator.png import render_png
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.sdk_clients import SdkClients
from tests.support.sse import decode

# An OpenAI GPT image model priced by size and quality (the simulator answers it in base64), beside
# the built-in Z.ai CogView-4 ($0.01 per image; the simulator answers it with provider URLs).
GPT_IMAGE = {
    "name": "GPT Image", "family": "gpt-image", "provider": "openai", "mode": "image",
    "deployments": [{"provider": "openai", "upstream_model": "gpt-image-1"}],
    "inputs": {"sizes": ["1024x1024", "1536x1024"], "qualities": ["low", "high"], "max_images": 4},
    "unit_pricing": {"price": "0.011", "options": [{"size": "1536x1024", "quality": "high", "price": "0.25"},
                                                    {"quality": "high", "price": "0.167"}]},
}


@pytest.fixture(scope="module")
def gw(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    directory: Path = tmp_path_factory.mktemp("images")
    with run_gateway(sqlite_url(directory), sim_url, circuit_failures=0, max_attempts=1,
                     models={"gpt-image": GPT_IMAGE}, media={"download_allow": ["127.0.0.1"]},
                     providers={"zai": {"base_url": f"{sim_url}/api/paas/v4", "api_key_env": ""}}) as running:
        yield running


_clients = SdkClients()
_close_clients = _clients.closed_after_module()


def client(gw: RunningGateway, key: str) -> openai.OpenAI:
    return _clients.open(gw.base_url, key)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def generation(gw: RunningGateway, key: str, generation_id: str) -> dict[str, Any]:
    response = httpx.get(f"{gw.base_url}/v1/generations/{generation_id}", headers={"authorization": f"Bearer {key}"})
    return dict(decode(response.raise_for_status().content))


def charges(gw: RunningGateway, account: str) -> dict[str, Decimal]:
    return {e["generation_id"]: -Decimal(str(e["amount"])) for e in gw.ledger(account) if e["kind"] == "charge"}


def sim_posts(sim_url: str) -> int:
    return int(httpx.get(f"{sim_url}/_sim/stats").json()["requests"])


def test_url_images_are_our_signed_copies_fetched_without_a_key_and_billed_exactly(gw: RunningGateway) -> None:
    account, key = gw.create_account("2")
    raw = client(gw, key).images.with_raw_response.generate(model="gpt-image", prompt="a red fox", n=2,
                                                             quality="high", response_format="url")
    answer = raw.parse()
    assert len(answer.data) == 2
    for index, image in enumerate(answer.data):
        assert image.url is not None and image.url.startswith(gw.base_url + "/v1/media/") and image.b64_json is None
        fetched = httpx.get(image.url)  # no API key: the signature is the credential
        assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
        assert fetched.content == render_png(f"a red fox#{index}", 1024, 1024)
    body = decode(raw.http_response.content)
    cost = Decimal(str(body["usage"]["cost"]))
    assert cost == 2 * Decimal("0.167") and body["usage"]["images"] == 2 and body["model"] == "gpt-image"
    row = generation(gw, key, raw.headers["x-runapi-generation-id"])
    assert (row["status"], row["unit"], row["units"], row["price_unit"]) == ("succeeded", "image", 2, "0.167")
    assert Decimal(str(row["cost"])) == cost == charges(gw, account)[row["id"]]
    assert gw.balance(account) == Decimal(2) - cost == gw.ledger_sum(account)
    bad = httpx.get(answer.data[0].url.replace("signature=", "signature=0"))  # type: ignore[union-attr]
    assert bad.status_code in (401, 403)


@pytest.mark.parametrize("response_format", ["url", "b64_json"])
def test_an_image_the_provider_could_not_deliver_is_not_billed(gw: RunningGateway, response_format: str) -> None:
    """Three asked, the provider's third undeliverable (an expired URL, or bad base64): two answered, two
    billed, the third counted as failed, end to end."""
    account, key = gw.create_account("2")
    raw = client(gw, key).images.with_raw_response.generate(
        model="gpt-image", prompt="three owls", n=3, quality="high", response_format=response_format,  # type: ignore[arg-type]
        extra_body={"x_sim": {"fault": "partial"}})
    answer = raw.parse()
    assert len(answer.data) == 2
    body = decode(raw.http_response.content)
    assert (body["usage"]["images"], body["usage"]["failed_images"]) == (2, 1)
    row = generation(gw, key, raw.headers["x-runapi-generation-id"])
    assert (row["status"], row["units"]) == ("succeeded", 2)
    assert Decimal(str(row["cost"])) == 2 * Decimal("0.167") == Decimal(str(body["usage"]["cost"]))
    assert gw.balance(account) == Decimal(2) - 2 * Decimal("0.167") == gw.ledger_sum(account)


def test_b64_json_answers_the_stored_copy_at_the_size_and_quality_price(gw: RunningGateway) -> None:
    account, key = gw.create_account("1")
    raw = client(gw, key).images.with_raw_response.generate(model="gpt-image", prompt="a blue bird", size="1536x1024",
                                                             quality="low", response_format="b64_json")
    image = raw.parse().data[0]
    assert image.url is None and image.b64_json is not None
    data = base64.b64decode(image.b64_json)
    assert png_size(data) == (1536, 1024) and data == render_png("a blue bird#0", 1536, 1024)
    row = generation(gw, key, raw.headers["x-runapi-generation-id"])
    assert (row["units"], row["price_unit"]) == (1, "0.011")  # no option matches low quality: the base price
    assert Decimal(str(row["cost"])) == Decimal("0.011") == Decimal(1) - gw.balance(account)


def test_zai_model_from_provider_urls_kept_in_the_store(gw: RunningGateway) -> None:
    account, key = gw.create_account("1")
    sdk = client(gw, key)
    raw = sdk.images.with_raw_response.generate(model="cogview-4", prompt="a lantern", size="768x1344")
    url = raw.parse().data[0].url
    assert url is not None and url.startswith(gw.base_url + "/v1/media/")
    fetched = httpx.get(url)
    assert fetched.headers["content-type"] == "image/png"
    assert fetched.content == render_png("a lantern#0", 768, 1344)
    b64 = sdk.images.with_raw_response.generate(model="cogview-4", prompt="a lantern", response_format="b64_json")
    assert png_size(base64.b64decode(b64.parse().data[0].b64_json or "")) == (1024, 1024)
    ids = [raw.headers["x-runapi-generation-id"], b64.headers["x-runapi-generation-id"]]
    assert [charges(gw, account)[i] for i in ids] == [Decimal("0.01")] * 2
    assert gw.balance(account) == Decimal("0.98") == gw.ledger_sum(account)


def test_the_hold_is_n_times_the_worst_unit_price(gw: RunningGateway, sim_url: str) -> None:
    account, key = gw.create_account("0.9")  # 4 low images cost 0.044, but the hold is 4 × 0.25 = 1.00
    before = sim_posts(sim_url)
    with pytest.raises(openai.APIStatusError) as caught:
        client(gw, key).images.generate(model="gpt-image", prompt="four cats", n=4, quality="low")
    assert caught.value.status_code == 402
    assert sim_posts(sim_url) == before and gw.balance(account) == Decimal("0.9")
    client(gw, key).images.generate(model="gpt-image", prompt="three cats", n=3, quality="low")  # holds 0.75
    assert gw.balance(account) == Decimal("0.9") - 3 * Decimal("0.011")


@pytest.mark.parametrize(("model", "x_sim", "status", "code"), [
    # The provider's content filter refuses the whole call: OpenAI's code, from OpenAI's and from Z.ai's 1301.
    ("gpt-image", {"fault": "filtered"}, 400, "content_policy_violation"),
    ("cogview-4", {"fault": "filtered"}, 400, "content_policy_violation"),
    ("gpt-image", {"fault": "500"}, 503, "upstream_unavailable"),
])
def test_filtered_or_undeliverable_images_are_free(gw: RunningGateway, model: str, x_sim: dict[str, Any],
                                                   status: int, code: str) -> None:
    account, key = gw.create_account("1")
    with client(gw, key) as sdk, pytest.raises(openai.APIStatusError) as caught:
        sdk.images.generate(model=model, prompt="anything", extra_body={"x_sim": x_sim})
    assert caught.value.status_code == status
    error = caught.value.response.json()["error"]
    assert set(error) >= {"message", "type", "code"} and error["message"] and error["code"] == code
    rows = gw.admin.get("/admin/generations", params={"account_id": account}).json()["data"]
    assert [r["status"] for r in rows] == ["failed"] and Decimal(str(rows[0]["cost"])) == 0
    assert gw.balance(account) == Decimal(1) == gw.ledger_sum(account)


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "cogview-4", "prompt": "x", "size": "999x999"}, "size"),
    ({"model": "cogview-4", "prompt": "x", "n": 2}, "n"),
    ({"model": "gpt-image", "prompt": "x", "quality": "ultra"}, "quality"),
    ({"model": "gpt-image", "prompt": "x", "response_format": "gif"}, "response_format"),
    ({"model": "gpt-image", "prompt": ""}, "prompt"),
    ({"model": "gpt-image"}, "prompt"),
    ({"prompt": "x"}, "model"),
    ({"model": "glm-4.5-air", "prompt": "x"}, "model"),
])
def test_a_request_that_breaks_the_schema_is_refused_before_any_hold(gw: RunningGateway, sim_url: str,
                                                                     body: dict[str, Any], param: str) -> None:
    account, key = gw.create_account("0")  # no credit at all: a hold would answer 402, not 400
    before = sim_posts(sim_url)
    response = httpx.post(f"{gw.base_url}/v1/images/generations", json=body, headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert gw.admin.get("/admin/generations", params={"account_id": account}).json()["data"] == []
    assert sim_posts(sim_url) == before


def test_an_idempotent_retry_gets_the_same_images_and_is_charged_once(gw: RunningGateway, sim_url: str) -> None:
    account, key = gw.create_account("1")
    sdk = client(gw, key)
    before = sim_posts(sim_url)
    first = sdk.images.with_raw_response.generate(model="cogview-4", prompt="a kite",
                                                  extra_headers={"Idempotency-Key": "kite-1"})
    again = sdk.images.with_raw_response.generate(model="cogview-4", prompt="a kite",
                                                  extra_headers={"Idempotency-Key": "kite-1"})
    assert again.parse().data[0].url == first.parse().data[0].url
    assert again.headers["x-runapi-generation-id"] == first.headers["x-runapi-generation-id"]
    assert sim_posts(sim_url) == before + 1
    assert list(charges(gw, account).values()) == [Decimal("0.01")] and gw.balance(account) == Decimal("0.99")
