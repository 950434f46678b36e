"""Modes, units, unit prices and typed inputs: load-time checks, request checks, and what /v1/models shows."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from runapi.money import PriceOption, UnitPricing, unit_cost_nanos
from runapi.catalog import (
    CatalogError,
    build_catalog,
    builtin_catalog_data,
    check_request,
)
from runapi.errors import InvalidRequest
from tests.support.gateway import RunningGateway

BUILTIN = builtin_catalog_data()


def catalog_with(model_id: str, table: dict[str, Any]) -> Any:
    return build_catalog(copy.deepcopy(BUILTIN), {}, {model_id: table})


IMAGE = {"name": "Pic", "family": "pic", "provider": "zai", "mode": "image",
         "deployments": [{"provider": "zai", "upstream_model": "pic-1"}], "unit_pricing": {"price": "0.04"}}


@pytest.mark.parametrize(("table", "fix"), [
    ({**IMAGE, "unit_pricing": None, "pricing": {"input": "1", "output": "1"}}, "not per token"),
    ({k: v for k, v in IMAGE.items() if k != "unit_pricing"}, "add [models.pic.unit_pricing]"),
    ({**IMAGE, "unit": "tokens"}, "set unit = 'image'"),
    ({**IMAGE, "mode": "video", "unit": "image"}, "billed per 'video' or 'second'"),
    ({**IMAGE, "task_type": "asynchronous"}, "set task_type = 'synchronous'"),
    ({**IMAGE, "mode": "video", "task_type": "synchronous"}, "set task_type = 'asynchronous'"),
    ({**IMAGE, "unit_pricing": {"price": "0.0000000001"}}, "at most 9 decimals"),
    ({**IMAGE, "unit_pricing": {"price": "-1"}}, "non-negative"),
    ({**IMAGE, "inputs": {"sizes": ["1024x1024"]},
      "unit_pricing": {"price": "0.04", "options": [{"size": "512x512", "price": "0.02"}]}}, "not one of inputs.sizes"),
    ({**IMAGE, "unit_pricing": {"price": "0.04", "options": [{"price": "0.02"}]}}, "needs a size or a quality"),
    ({**IMAGE, "mode": "embedding", "unit": "tokens", "unit_pricing": None}, "billed per 1M tokens; add"),
    ({**{k: v for k, v in IMAGE.items() if k != "unit_pricing"}, "mode": "embedding",
      "pricing": {"input": "0.02", "output": "0.01"}}, "bills input tokens only"),
    ({**IMAGE, "fallbacks": ["glm-4.5-air"]}, "fallback 'glm-4.5-air' is a text model"),
])
def test_an_entry_that_does_not_fit_its_mode_is_refused_with_the_fix(table: dict[str, Any], fix: str) -> None:
    table = {k: v for k, v in table.items() if v is not None}
    with pytest.raises(CatalogError, match="model 'pic'") as caught:
        catalog_with("pic", table)
    assert fix in str(caught.value)


def test_mode_dependent_defaults_and_an_operator_override() -> None:
    catalog = catalog_with("pic", {**IMAGE, "inputs": {"sizes": ["1024x1024", "1536x1024"], "qualities": ["low", "high"]},
                                   "unit_pricing": {"price": "0.04", "options": [
                                       {"size": "1536x1024", "quality": "high", "price": "0.25"},
                                       {"quality": "high", "price": "0.17"}]}})
    pic = catalog.models["pic"]
    assert (pic.unit, pic.task_type, pic.endpoint, pic.billing_unit) == ("image", "synchronous",
                                                                        "/v1/images/generations", "image")
    assert pic.unit_pricing is not None and pic.unit_pricing.max_price() == Decimal("0.25")
    text = catalog.models["glm-4.5-air"]  # text models keep working unchanged
    assert (text.mode, text.unit, text.endpoint, text.unit_pricing) == ("text", "tokens", "/v1/chat/completions", None)
    cheaper = build_catalog(copy.deepcopy(BUILTIN), {}, {"cogview-4": {"unit_pricing": {"price": "0.008"}}})
    assert cheaper.models["cogview-4"].unit_pricing == UnitPricing(price=Decimal("0.008"))
    embed = catalog_with("vec", {"name": "Vec", "family": "vec", "provider": "openai", "mode": "embedding",
                                 "pricing": {"input": "0.01"},  # no output price: embeddings have none
                                 "deployments": [{"provider": "openai", "upstream_model": "vec-1"}]}).models["vec"]
    assert (embed.pricing.input, embed.pricing.output, embed.endpoint) == (Decimal("0.01"), 0, "/v1/embeddings")


@pytest.mark.parametrize(("size", "quality", "units", "nanos"), [
    ("1024x1024", "low", 1, 40_000_000),
    ("1536x1024", "high", 2, 500_000_000),  # the first matching option wins
    ("1024x1024", "high", 3, 510_000_000),
    ("", "", 0, 0),
])
def test_unit_costs_are_exact_per_size_and_quality(size: str, quality: str, units: int, nanos: int) -> None:
    pricing = UnitPricing(price=Decimal("0.04"), options=[
        PriceOption(size="1536x1024", quality="high", price=Decimal("0.25")),
        PriceOption(quality="high", price=Decimal("0.17"))])
    assert unit_cost_nanos(pricing, units, size, quality) == nanos


CATALOG = build_catalog(copy.deepcopy(BUILTIN), {}, {})


@pytest.mark.parametrize(("model_id", "body", "param"), [
    ("embedding-3", {"model": "embedding-3"}, "input"),
    ("embedding-3", {"model": "embedding-3", "input": ""}, "input"),
    ("embedding-3", {"model": "embedding-3", "input": ["a"] * 65}, "input"),
    ("embedding-3", {"model": "embedding-3", "input": "a", "dimensions": 300}, "dimensions"),
    ("embedding-3", {"model": "embedding-3", "input": "a", "encoding_format": "int8"}, "encoding_format"),
    ("text-embedding-3-small", {"model": "m", "input": "a", "dimensions": 1537}, "dimensions"),
    ("text-embedding-3-small", {"model": "m", "input": [[1, 2], [-3]]}, "input[1][0]"),
    ("cogview-4", {"model": "cogview-4"}, "prompt"),
    ("cogview-4", {"model": "cogview-4", "prompt": "cat", "size": "4096x4096"}, "size"),
    ("cogview-4", {"model": "cogview-4", "prompt": "cat", "n": 2}, "n"),
    ("cogview-4", {"model": "cogview-4", "prompt": "cat", "response_format": "png"}, "response_format"),
    ("cogvideox-3", {"model": "cogvideox-3"}, "prompt"),
    ("cogvideox-3", {"model": "cogvideox-3", "prompt": "x" * 513}, "prompt"),
    ("cogvideox-3", {"model": "cogvideox-3", "prompt": "cat", "duration": 7}, "duration"),
    ("cogvideox-3", {"model": "cogvideox-3", "prompt": "cat", "fps": 24}, "fps"),
    ("cogvideox-3", {"model": "cogvideox-3", "image_url": ["a", "b", "c"]}, "image_url"),
    ("cogvideox-3", {"model": "cogvideox-3", "prompt": "cat", "with_audio": "yes"}, "with_audio"),
    ("glm-4.5-air", {"model": "glm-4.5-air", "messages": []}, "messages"),
    ("glm-4.5-air", {"model": "glm-4.5-air", "messages": [{"role": "robot"}]}, "messages[0].role"),
])
def test_a_request_that_breaks_the_schema_names_the_field(model_id: str, body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_request(CATALOG.models[model_id].input_schema(), body)
    assert caught.value.status == 400 and caught.value.param == param
    assert f"`{param}`" in caught.value.message


@pytest.mark.parametrize(("model_id", "body"), [
    ("embedding-3", {"model": "embedding-3", "input": ["a", "b"], "dimensions": 512, "encoding_format": "base64"}),
    ("text-embedding-3-small", {"model": "m", "input": [[1, 2], [3]], "dimensions": 64, "extra": {"kept": True}}),
    ("cogview-4", {"model": "cogview-4", "prompt": "cat", "size": "1024x1024", "quality": "hd", "n": 1}),
    ("cogvideox-3", {"model": "cogvideox-3", "image_url": "https://example.com/a.png", "duration": 10, "fps": 60,
                     "with_audio": True, "quality": "quality"}),
])
def test_a_request_that_fits_passes(model_id: str, body: dict[str, Any]) -> None:
    check_request(CATALOG.models[model_id].input_schema(), body)


def test_models_api_shows_mode_unit_prices_and_input_schema(gateway: RunningGateway) -> None:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="unused", max_retries=0)
    listed = {m.id: m for m in client.models.list().data}
    video = listed["cogvideox-3"].model_dump()
    assert (video["mode"], video["task_type"], video["unit"], video["endpoint"]) == (
        "video", "asynchronous", "video", "/v1/videos")
    assert video["pricing"] == {"currency": "USD", "unit": "video", "price": "0.2", "options": []}
    assert set(video["input_schema"]["properties"]) >= {"prompt", "image_url", "duration", "fps", "with_audio"}
    one = httpx.get(f"{gateway.base_url}/v1/models/embedding-3").json()
    assert one["object"] == "model" and one["mode"] == "embedding" and one["unit"] == "tokens"
    assert one["pricing"]["input"] == "0.07" and one["input_schema"]["properties"]["dimensions"]["enum"] == [
        256, 512, 1024, 2048]
    text = listed["glm-4.5-air"].model_dump()
    assert text["pricing"]["unit"] == "1M tokens" and text["input_schema"]["required"] == ["model", "messages"]


@pytest.mark.parametrize("model_id", ["cogview-4", "embedding-3", "cogvideox-3"])
def test_chat_with_a_media_model_is_refused_before_any_hold(gateway: RunningGateway, model_id: str) -> None:
    account, key = gateway.create_account("1")
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "hi"}])
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == "model" and error["code"] == "model_not_supported"
    assert CATALOG.models[model_id].endpoint in error["message"]
    assert gateway.balance(account) == Decimal(1) == gateway.ledger_sum(account)
