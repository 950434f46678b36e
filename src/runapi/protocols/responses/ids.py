"""Response and item IDs. A response's ID is its generation's (`gen-<hex>` → `resp_<hex>`), so
`GET /v1/generations/{id}` finds the call's cost; an item's ID carries its response's hex
(`msg_<hex>_<n>`), so an `item_reference` finds the stored response that holds it."""

from __future__ import annotations

GENERATION_PREFIX = "gen-"
RESPONSE_PREFIX = "resp_"


def response_id(generation_id: str) -> str:
    """The response ID of a generation."""
    return RESPONSE_PREFIX + generation_id.removeprefix(GENERATION_PREFIX)


def generation_of(resp_id: str) -> str:
    """The generation ID behind a response ID."""
    return GENERATION_PREFIX + resp_id.removeprefix(RESPONSE_PREFIX)


def item_id(kind: str, resp_id: str, index: int | str) -> str:
    """The ID of item `index` of a response: `kind` is msg, fc, ctc, rs (output) or in (input)."""
    return f"{kind}_{resp_id.removeprefix(RESPONSE_PREFIX)}_{index}"


def item_response(item: str) -> str | None:
    """The response ID an item ID belongs to (None for an ID this gateway did not make)."""
    parts = item.split("_")
    return RESPONSE_PREFIX + parts[1] if len(parts) == 3 and parts[1] else None
