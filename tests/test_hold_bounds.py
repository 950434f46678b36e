"""Issue 20.8: a hold is a true upper bound of what its call can cost, and whatever a balance could not
cover is an explicit write-off line in the ledger, shown in the revenue report and the operator's
dashboard, never silent.

The prompt is held at its UTF-8 bytes (a byte-level BPE token is at least one byte; "a a a" runs
about 2 bytes a token, and bytes / 3 fell short), an image at the model's largest image, reasoning
within `max_tokens` where the upstream counts it there and at the catalog's `output_ceiling` where it
does not. The simulator counts one token a word, `x_sim.image_tokens` per image, and adds
`x_sim.reasoning_tokens` on top of `max_tokens` (as an upstream that counts reasoning apart would).
"""

from __future__ import annotations

import asyncio
import base64
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from runapi.money import Usage, cost_nanos, nanos_to_usd
from runapi.pipeline.hold_bound import prompt_shape
from runapi.protocols.openai.chat_request import decode_chat_request, prompt_bytes
from runapi.simulator import prompt_tokens
from runapi.storage import (
    AccountStore,
    Ledger,
    SettlementSink,
    SqliteSettlementSink,
    create_engine,
    upgrade,
)
from runapi.storage.ledger import WRITEOFF_NOTE, WRITEOFF_SUFFIX
from runapi.storage.schema import ledger
from runapi.storage.settlement_sink_pg import PostgresSettlementSink
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, run_gateway
from tests.support.limits import hold_nanos
from tests.support.postgres import temporary_database
from tests.support.rollups import rollup_mismatches_of
from tests.test_settlement_sink import settlement

NANO = Decimal("1e-9")
PIXEL = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()


def call(gw: RunningGateway, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"},
                      timeout=60)


def cost_of(gw: RunningGateway, model: str, usage: Usage) -> int:
    entry = gw.settings.catalog.resolve(model)
    assert entry is not None
    return cost_nanos(usage, entry.pricing)


def kinds(gw: RunningGateway, account: str) -> list[str]:
    return [entry["kind"] for entry in gw.ledger(account)]


def served_within_its_hold(gw: RunningGateway, body: dict[str, Any], cost: int) -> None:
    """Credit one nano-dollar short of the call's true cost: refused (402), nothing given away. Credit of
    exactly its hold: served and charged its full cost, with no write-off."""
    account, key = gw.create_account(nanos_to_usd(cost - 1))
    refused = call(gw, key, body)
    assert refused.status_code == 402, refused.text[:300]
    assert kinds(gw, account) == ["topup"]
    hold = hold_nanos(gw, body)
    assert hold >= cost
    account, key = gw.create_account(nanos_to_usd(hold))
    response = call(gw, key, body)
    assert response.status_code == 200, response.text[:300]
    assert Decimal(str(response.json()["usage"]["cost"])) == cost * NANO
    assert kinds(gw, account) == ["topup", "charge"]  # no write-off
    assert gw.balance(account) == (hold - cost) * NANO == gw.ledger_sum(account)


def test_a_prompt_of_short_words_is_held_at_its_bytes(gateway: RunningGateway) -> None:
    messages = [{"role": "user", "content": " ".join(["a"] * 3000)}]  # 5,999 bytes, 3,000 words
    body = {"model": "glm-4.5-air", "messages": messages, "max_tokens": 12}
    served_within_its_hold(gateway, body, cost_of(gateway, "glm-4.5-air",
                                                  Usage(input_tokens=prompt_tokens(messages), output_tokens=12)))


def test_an_image_is_held_at_the_models_largest_image(gateway: RunningGateway) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "what is this"},
                                             {"type": "image_url", "image_url": {"url": PIXEL}}]}]
    image_tokens = 20_000  # within gpt-4o-mini's formula (up to 48,169 for a large, detailed image)
    body = {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 12, "x_sim": {"image_tokens": image_tokens}}
    used = prompt_tokens(messages) - 85 + image_tokens
    served_within_its_hold(gateway, body, cost_of(gateway, "gpt-4o-mini", Usage(input_tokens=used, output_tokens=12)))


def test_reasoning_outside_max_tokens_is_held_at_the_output_ceiling(sim_url: str, tmp_path: Path) -> None:
    models = {"glm-4.5-air": {"output_ceiling": 2_000}}  # as if its upstream counted reasoning apart
    with run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'runapi.db'}", sim_url, models=models) as gw:
        messages = [{"role": "user", "content": "hello there"}]
        body = {"model": "glm-4.5-air", "messages": messages, "max_tokens": 12, "x_sim": {"reasoning_tokens": 1_500}}
        usage = Usage(input_tokens=prompt_tokens(messages), output_tokens=12 + 1_500)
        served_within_its_hold(gw, body, cost_of(gw, "glm-4.5-air", usage))


def operator_dashboard(gw: RunningGateway) -> str:
    with httpx.Client(base_url=gw.base_url, follow_redirects=False, timeout=30) as web:
        token = re.search(r'name="csrf_token" value="([^"]+)"', web.get("/admin/dashboard/login").text)
        assert token is not None
        signed_in = web.post("/admin/dashboard/login", data={"csrf_token": token.group(1), "token": ADMIN_TOKEN})
        assert signed_in.status_code == 303
        return web.get("/admin/dashboard").text


def test_what_a_balance_cannot_cover_is_an_explicit_write_off(database_url: str, sim_url: str) -> None:
    """glm-4.5-air's catalog says its upstream counts reasoning inside max_tokens; this upstream does not
    (a catalog out of date), so the call costs more than its hold and the account cannot pay it all."""
    with run_gateway(database_url, sim_url) as gw:
        messages = [{"role": "user", "content": "hello there"}]
        body = {"model": "glm-4.5-air", "messages": messages, "max_tokens": 12, "x_sim": {"reasoning_tokens": 1_000}}
        cost = cost_of(gw, "glm-4.5-air", Usage(input_tokens=prompt_tokens(messages), output_tokens=1_012))
        hold = hold_nanos(gw, body)
        account, key = gw.create_account(nanos_to_usd(hold))
        response = call(gw, key, body)
        assert response.status_code == 200, response.text
        generation = response.json()["id"]
        entries = gw.ledger(account)
        assert [(e["kind"], Decimal(str(e["amount"])), e["generation_id"]) for e in entries[1:]] == [
            ("charge", -cost * NANO, generation),  # the charge at its full cost...
            ("writeoff", (cost - hold) * NANO, generation + WRITEOFF_SUFFIX),  # ... and the loss, in plain sight
        ]
        assert gw.balance(account) == 0 == gw.ledger_sum(account)  # never below zero
        report = gw.admin.get("/admin/reports/revenue").raise_for_status().json()
        (line,) = [m for m in report["data"] if m["model"] == "glm-4.5-air"]
        assert Decimal(str(line["revenue"])) == cost * NANO
        assert Decimal(str(line["write_off"])) == Decimal(str(report["total"]["write_off"])) == (cost - hold) * NANO
        page = operator_dashboard(gw)
        shown = re.search(r'id="write-off">([^<]+)<', page)
        assert shown is not None and str(nanos_to_usd(cost - hold)) in shown.group(1).replace(",", "")
        assert call(gw, key, body).status_code == 402  # and the empty account is served no more
        assert rollup_mismatches_of(database_url) == []  # the report read the write-off from its roll-up


async def _sink_rows(sink_kind: str, url: str) -> tuple[dict[str, int], list[tuple[Any, ...]], int, dict[str, int]]:
    """Write a batch with one uncovered charge twice (the second, a retry) through one sink: (IDs returned,
    the ledger rows as (kind, amount, generation ID, note), the balance, the retry's IDs)."""
    engine = create_engine(url)
    account = await AccountStore(engine).create_account("acme")
    await Ledger(engine).add_entry(account.id, "topup", 4_000)
    sink: SettlementSink
    if sink_kind == "ledger":
        sink = Ledger(engine)
    elif sink_kind == "sqlite":
        sink = SqliteSettlementSink(url.split("///", 1)[1])
    else:
        sink = PostgresSettlementSink(url)
    uncovered = settlement(account.id, "gen-short", 4_000, cost_nanos=10_000)  # cost 10,000; 4,000 was there
    try:
        written = await sink.record([uncovered, settlement(account.id, "gen-paid", 0)])
        again = await sink.record([settlement(account.id, "gen-short", 4_000, cost_nanos=10_000)])
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(ledger.c.kind, ledger.c.amount_nanos, ledger.c.generation_id,
                                                 ledger.c.note).order_by(ledger.c.id))).all()
        balance, _ = await Ledger(engine).balance(account.id)
        return written, [tuple(row) for row in rows], balance, again
    finally:
        await sink.close()
        await engine.dispose()


@pytest.mark.parametrize("sink_kind", ["ledger", "sqlite", "postgresql"])
def test_every_sink_writes_the_full_charge_and_its_write_off_once(sink_kind: str, tmp_path: Path) -> None:
    if sink_kind == "postgresql":
        with temporary_database() as url:
            upgrade(url)
            written, rows, balance, again = asyncio.run(_sink_rows(sink_kind, url))
            mismatches = rollup_mismatches_of(url)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'runapi.db'}"
        upgrade(url)
        written, rows, balance, again = asyncio.run(_sink_rows(sink_kind, url))
        mismatches = rollup_mismatches_of(url)
    assert rows == [("topup", 4_000, None, ""), ("charge", -10_000, "gen-short", ""),
                    ("writeoff", 6_000, "gen-short" + WRITEOFF_SUFFIX, WRITEOFF_NOTE)]
    assert set(written) == {"gen-short"} and again == {}  # the retry wrote nothing twice
    assert balance == 0
    assert mismatches == []  # the write-off reached the report roll-up, once


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "user", "content": "héllo there"}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "look"},
                                               {"type": "image_url", "image_url": {"url": PIXEL}}]}]},
    {"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "function": {"name": "lookup", "arguments": "{\"q\": \"x\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "found"}],
     "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
     "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}},
])
def test_the_bound_covers_the_estimate_and_the_estimate_is_unchanged(body: dict[str, Any]) -> None:
    """One pass finds both: the documented estimate (bytes the disconnect charge and tokens/min count, as
    `prompt_bytes` does) and the hold's bound, never below the estimate's text."""
    request, _ = decode_chat_request(httpx.Request("POST", "/", json={"model": "glm-4.5-air", **body}).content)
    shape = prompt_shape(request)
    assert shape.estimate_bytes == prompt_bytes(request)
    assert shape.text_bytes + 3000 * (shape.images + shape.unbounded) >= shape.estimate_bytes
