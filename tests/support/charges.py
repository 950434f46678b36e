"""Checks that every generation of an account was charged exactly: cost = catalog prices × usage."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from tests.support.gateway import RunningGateway
from tests.support.sse import decode

M = Decimal(1_000_000)
PRICES = {  # the built-in catalog's, USD per 1M tokens: input, output, cache read, cache write
    "glm-4.5-air": (Decimal("0.10"), Decimal("0.55"), Decimal("0.02"), Decimal("0")),
    "glm-4.6": (Decimal("0.60"), Decimal("2.20"), Decimal("0.11"), Decimal("0")),
    "claude-sonnet-5-5": (Decimal("2.00"), Decimal("10.00"), Decimal("0.20"), Decimal("2.50")),
    "claude-haiku-4-5": (Decimal("1.00"), Decimal("5.00"), Decimal("0.10"), Decimal("1.25")),
}


def price(model: str, usage: dict[str, Any]) -> Decimal:
    """The exact cost of a generation's usage (the generation view's token fields) at catalog prices."""
    price_in, price_out, price_read, price_write = PRICES[model]
    cost: Decimal = (usage["input_tokens"] * price_in + usage["output_tokens"] * price_out
            + usage["cache_read_tokens"] * price_read + usage["cache_write_tokens"] * price_write) / M
    return cost


def generation(gw: RunningGateway, key: str, generation_id: str) -> dict[str, Any]:
    """`GET /v1/generations/{id}` as the account's own key sees it (exact decimals)."""
    response = httpx.get(f"{gw.base_url}/v1/generations/{generation_id}", headers={"authorization": f"Bearer {key}"})
    return dict(decode(response.raise_for_status().content))


def charged_generations(gw: RunningGateway, account: str, key: str, credit: Decimal) -> list[dict[str, Any]]:
    """Every charge in the account's ledger, as its generation, after checking that each cost is exact,
    that the generation view and the ledger agree, and that the balance is `credit` less their sum."""
    charges = [entry for entry in gw.ledger(account) if entry["kind"] == "charge"]
    rows = []
    for entry in charges:
        row = generation(gw, key, entry["generation_id"])
        assert row["status"] == "succeeded" and not row["estimated"], row
        assert row["cost"] == price(row["model"], row["usage"]) == -Decimal(str(entry["amount"])), (row, entry)
        rows.append(row)
    assert gw.balance(account) == credit - sum((row["cost"] for row in rows), Decimal(0)) == gw.ledger_sum(account)
    return rows
