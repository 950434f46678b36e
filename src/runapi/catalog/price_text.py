"""A model's prices in its unit, for people (one line) and for JSON (exact decimal strings)."""

from __future__ import annotations

from typing import Any

from runapi.catalog.catalog import ModelEntry


def pricing_json(entry: ModelEntry) -> dict[str, Any]:
    """Prices as exact decimal strings: per 1M tokens for token modes; per image, video or second
    (with any size/quality options) for media modes."""
    if entry.unit_pricing is not None:
        return {
            "currency": "USD", "unit": entry.unit, "price": format(entry.unit_pricing.price, "f"),
            "options": [{"size": o.size or None, "quality": o.quality or None, "price": format(o.price, "f")}
                        for o in entry.unit_pricing.options],
        }
    p = entry.pricing
    return {"currency": "USD", "unit": "1M tokens", "input": format(p.input, "f"), "output": format(p.output, "f"),
            "cache_read": format(p.cache_read, "f"), "cache_write": format(p.cache_write, "f")}


def price_line(entry: ModelEntry) -> str:
    """`$0.01 per image`, `$0.02 per 1M input tokens` or `in $0.10 · out $0.55 · cache read $0.02 ·
    cache write $0 per 1M tokens`, with any size/quality options after the unit price."""
    if entry.unit_pricing is not None:
        options = "".join(f"; {' '.join(filter(None, (o.size, o.quality)))}: ${o.price}"
                          for o in entry.unit_pricing.options)
        return f"${entry.unit_pricing.price} per {entry.unit}{options}"
    p = entry.pricing
    if entry.mode == "embedding":
        return f"${p.input} per 1M input tokens"
    return f"in ${p.input} · out ${p.output} · cache read ${p.cache_read} · cache write ${p.cache_write} per 1M tokens"
