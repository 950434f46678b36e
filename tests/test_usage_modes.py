"""Spend by mode and unit (issue 21 item 7): `GET /v1/usage`, the admin usage JSON and CSV, the revenue
report's margin, and both dashboards group every generation by its model's mode and billing unit.

Image calls have no endpoint yet (issue 21 item 3 comes on issue 22's shape), so the image generations
here are written as that endpoint will write them: a `generations` row with unit `image`, its count and
unit price, and its ledger charge, through the storage layer on the same database. Text calls are real.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from runapi.storage import Generation, Ledger, Settlement, create_engine
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, run_gateway
from tests.support.limits import chat, chat_body
from tests.test_dashboard import csrf_of, sign_in

MODELS = {"cogview-4": {"deployments": [{"provider": "zai", "upstream_model": "cogview-4-250304",
                                         "unit_cost": {"price": "0.006"}}]}}
IMAGES = (3, 2)  # two image calls: 3 and 2 images at $0.01 each


def image_generation(account: str, key_id: str, images: int) -> Settlement:
    cost = images * 10_000_000  # $0.01 per image, in nano-dollars
    row = Generation(
        id=f"gen-{secrets.token_hex(8)}", account_id=account, key_id=key_id, model="cogview-4", provider="zai",
        upstream_model="cogview-4-250304", status="succeeded", stream=False, input_tokens=0, output_tokens=0,
        cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0, price_input="0", price_output="0",
        price_cache_read="0", price_cache_write="0", cost_nanos=cost, estimated=False, latency_ms=900.0,
        created_at=datetime.now(UTC), unit="image", units=images, price_unit="0.01")
    return Settlement(row, cost)


async def record(database_url: str, settlements: list[Settlement]) -> None:
    engine = create_engine(database_url)
    try:
        await Ledger(engine).record(settlements)
    finally:
        await engine.dispose()


@pytest.fixture()
def mixed(database_url: str, sim_url: str) -> Iterator[tuple[RunningGateway, str, str]]:
    """A gateway whose account made two text calls and two image calls: (gateway, account, key)."""
    with run_gateway(database_url, sim_url, models=MODELS) as gw:
        account, key = gw.create_account("10")
        for tokens in (7, 11):
            assert chat(gw, key, chat_body(completion_tokens=tokens)).status_code == 200
        key_id = httpx.get(f"{gw.base_url}/v1/usage", headers={"authorization": f"Bearer {key}"}).json()["key"]["id"]
        asyncio.run(record(database_url, [image_generation(account, key_id, n) for n in IMAGES]))
        yield gw, account, key


def test_usage_csv_and_revenue_group_spend_by_mode_and_unit(mixed: tuple[RunningGateway, str, str]) -> None:
    gw, account, key = mixed
    usage = httpx.get(f"{gw.base_url}/v1/usage", headers={"authorization": f"Bearer {key}"}).json()
    text_lines = [line for line in usage["data"] if line["model"] == "glm-4.5-air"]
    text_cost = sum(Decimal(str(line["cost"])) for line in text_lines)
    text_tokens = sum(line["total_tokens"] for line in text_lines)
    assert all((line["mode"], line["unit"], line["units"]) == ("text", "tokens", 0) for line in text_lines)
    images = next(line for line in usage["data"] if line["model"] == "cogview-4")
    assert (images["mode"], images["unit"], images["units"], images["requests"]) == ("image", "image", 5, 2)
    by_mode = {(m["mode"], m["unit"]): m for m in usage["by_mode"]}
    assert list(by_mode) == [("text", "tokens"), ("image", "image")]
    assert by_mode["image", "image"]["quantity"] == 5 and Decimal(str(by_mode["image", "image"]["cost"])) == Decimal(
        "0.05")
    assert by_mode["text", "tokens"]["quantity"] == text_tokens > 0
    assert Decimal(str(by_mode["text", "tokens"]["cost"])) == text_cost
    spent = sum(Decimal(str(m["cost"])) for m in usage["by_mode"])
    assert Decimal(str(usage["total"]["cost"])) == spent == Decimal(10) - gw.balance(account)
    assert gw.balance(account) == gw.ledger_sum(account)

    exported = gw.admin.get("/admin/usage", params={"account_id": account, "format": "csv"}).text
    lines = list(csv.DictReader(io.StringIO(exported)))
    assert {(r["model"], r["mode"], r["unit"], r["units"]) for r in lines} == {
        ("glm-4.5-air", "text", "tokens", "0"), ("cogview-4", "image", "image", "5")}
    admin = gw.admin.get("/admin/usage", params={"account_id": account}).json()
    assert admin["by_mode"] == usage["by_mode"]

    report = gw.admin.get("/admin/reports/revenue").json()
    image_line = next(m for m in report["data"] if m["model"] == "cogview-4")
    assert (image_line["mode"], image_line["unit"], image_line["units"]) == ("image", "image", 5)
    # Upstream: 5 images at the deployment's $0.006 → margin $0.05 − $0.03.
    assert Decimal(str(image_line["upstream_cost"])) == Decimal("0.03")
    assert Decimal(str(image_line["margin"])) == Decimal("0.02")
    modes = {(m["mode"], m["unit"]): m for m in report["by_mode"]}
    assert Decimal(str(modes["image", "image"]["revenue"])) == Decimal("0.05") and modes["image", "image"][
        "quantity"] == 5
    assert modes["text", "tokens"]["margin"] is None  # glm-4.5-air declares no upstream cost here
    assert Decimal(str(report["total"]["revenue"])) == sum(Decimal(str(m["revenue"])) for m in report["by_mode"])


def test_dashboards_show_spend_by_mode(mixed: tuple[RunningGateway, str, str]) -> None:
    gw, _, key = mixed
    with httpx.Client(base_url=gw.base_url) as web, httpx.Client(base_url=gw.base_url) as operator:
        sign_in(web, key)
        page = web.get("/dashboard").text
        token = csrf_of(operator.get("/admin/dashboard/login").text)
        signed = operator.post("/admin/dashboard/login", data={"csrf_token": token, "token": ADMIN_TOKEN})
        admin = operator.get("/admin/dashboard", params={"lang": "zh-Hant"}).text
    assert 'id="mode-table"' in page and signed.status_code == 303
    rows = dict(re.findall(r'<tr data-mode="(\w+)" data-unit="\w+">.*?class="num quantity">([^<]+)<', page, re.S))
    assert rows["image"].strip() == "5 images" and rows["text"].strip().endswith("tokens")
    assert 'id="mode-revenue-table"' in admin and "5 張圖片" in admin
