"""Modes, task types and billing units, and the load-time checks that tie them together.

A model's `mode` (text, embedding, image, video) decides its endpoint, the unit it is billed in
and which prices it must carry: token modes are priced per 1M tokens (`pricing`), media modes
per image, per video or per second of video (`unit_pricing`). `check_entry` runs on the merged,
typed entry at start-up and raises `CatalogError` with a message that says what to fix.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from runapi.money import NANOS_PER_USD, UnitPricing
from runapi.errors import InvalidRequest

Mode = Literal["text", "embedding", "image", "video"]
TaskType = Literal["synchronous", "asynchronous"]
Unit = Literal["tokens", "image", "video", "second"]

MODE_UNITS: dict[str, tuple[str, ...]] = {
    "text": ("tokens",), "embedding": ("tokens",), "image": ("image",), "video": ("video", "second"),
}
MODE_TASK_TYPES: dict[str, tuple[str, ...]] = {
    "text": ("synchronous", "asynchronous"), "embedding": ("synchronous",),
    "image": ("synchronous",), "video": ("asynchronous",),
}
MODE_ENDPOINTS: dict[str, str] = {
    "text": "/v1/chat/completions", "embedding": "/v1/embeddings",
    "image": "/v1/images/generations", "video": "/v1/videos",
}
UNIT_LABELS: dict[str, str] = {"tokens": "1M tokens", "image": "image", "video": "video", "second": "second"}


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


class CatalogError(ValueError):
    """A catalog entry that cannot be served as written; the message names the entry and the fix."""


def default_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Fill the fields whose default depends on the mode (unit, task type, endpoint, billing unit)
    in one raw model table, before it is typed. Explicit values are kept (and checked later)."""
    mode = data.get("mode", "text")
    if mode not in MODE_UNITS:
        return data  # the typed conversion names the field and the allowed values
    filled = dict(data)
    filled.setdefault("unit", MODE_UNITS[mode][0])
    filled.setdefault("task_type", MODE_TASK_TYPES[mode][0])
    filled.setdefault("endpoint", MODE_ENDPOINTS[mode])
    if mode == "embedding" and isinstance(filled.get("pricing"), dict):  # input tokens only: output free
        filled["pricing"] = {"output": "0", **filled["pricing"]}
    if filled["unit"] in UNIT_LABELS:
        filled.setdefault("billing_unit", "1K tokens" if filled["unit"] == "tokens" else UNIT_LABELS[filled["unit"]])
    return filled


def check_prices_present(model_id: str, data: dict[str, Any]) -> None:
    """The unit and task type fit the mode (`check_mode`); token modes need `[models.ID.pricing]`; media modes need `[models.ID.unit_pricing]` and no token
    prices (checked on the raw table: a typed entry cannot tell a default from a written value)."""
    mode, unit = data.get("mode", "text"), data.get("unit", "tokens")
    if mode in MODE_UNITS and unit in UNIT_LABELS and data.get("task_type") in ("synchronous", "asynchronous"):
        check_mode(model_id, mode, data["task_type"], unit)  # first: the unit decides which prices are needed
    if unit == "tokens" and "pricing" not in data:
        raise CatalogError(f"model {model_id!r}: {_a(mode)} model is billed per 1M tokens; add "
                           f"[models.{model_id}.pricing] with input and output (USD strings)")
    if unit != "tokens":
        if "pricing" in data:
            raise CatalogError(f"model {model_id!r}: {_a(mode)} model is billed per {unit}, not per token; "
                               f"remove [models.{model_id}.pricing] and set [models.{model_id}.unit_pricing]")
        if "unit_pricing" not in data:
            raise CatalogError(f"model {model_id!r}: {_a(mode)} model is billed per {unit}; add "
                               f'[models.{model_id}.unit_pricing] with price = "USD per {unit}"')


def _whole_nanos(price: Decimal) -> bool:
    scaled = price * NANOS_PER_USD
    return scaled.is_finite() and scaled == scaled.to_integral_value() and price >= 0


def check_unit_pricing(model_id: str, unit: str, pricing: UnitPricing, sizes: list[str], qualities: list[str]) -> None:
    """Unit prices are non-negative whole nano-dollars, and each option names a size or quality the
    model accepts."""
    for price in [pricing.price, *(o.price for o in pricing.options)]:
        if not _whole_nanos(price):
            raise CatalogError(f"model {model_id!r}: unit price {price} per {unit} must be a non-negative "
                               "amount of USD with at most 9 decimals")
    for option in pricing.options:
        if not option.size and not option.quality:
            raise CatalogError(f"model {model_id!r}: a unit_pricing option needs a size or a quality")
        if option.size and sizes and option.size not in sizes:
            raise CatalogError(f"model {model_id!r}: unit_pricing option size {option.size!r} is not one of "
                               f"inputs.sizes {sizes}")
        if option.quality and qualities and option.quality not in qualities:
            raise CatalogError(f"model {model_id!r}: unit_pricing option quality {option.quality!r} is not one "
                               f"of inputs.qualities {qualities}")


def check_mode(model_id: str, mode: str, task_type: str, unit: str) -> None:
    """The unit and task type fit the mode."""
    if unit not in MODE_UNITS[mode]:
        allowed = " or ".join(repr(u) for u in MODE_UNITS[mode])
        raise CatalogError(f"model {model_id!r}: {_a(mode)} model is billed per {allowed}, not {unit!r}; "
                           f"set unit = {MODE_UNITS[mode][0]!r}")
    if task_type not in MODE_TASK_TYPES[mode]:
        raise CatalogError(f"model {model_id!r}: {_a(mode)} model runs as a {MODE_TASK_TYPES[mode][0]} task; "
                           f"set task_type = {MODE_TASK_TYPES[mode][0]!r}")


def require_mode(model_id: str, mode: str, wanted: str, endpoint: str) -> None:
    """Refuse (400, `param` "model") a call to a model of another mode than the endpoint serves;
    `endpoint` is where the model is called instead."""
    if mode != wanted:
        raise InvalidRequest(f"The model `{model_id}` is {_a(mode)} model, not {_a(wanted)} model: call it at "
                             f"{endpoint}.", param="model", code="model_not_supported")
