"""Pure pricing, money units and credit holds."""

from runapi.accounting.money import (
    NANOS_PER_USD,
    PriceOption,
    Pricing,
    UnitPricing,
    Usage,
    cost_nanos,
    cost_usd,
    estimate_tokens,
    nanos_to_usd,
    unit_cost_nanos,
    usd_to_nanos,
)

__all__ = [
    "NANOS_PER_USD",
    "PriceOption",
    "Pricing",
    "UnitPricing",
    "Usage",
    "cost_nanos",
    "cost_usd",
    "estimate_tokens",
    "nanos_to_usd",
    "unit_cost_nanos",
    "usd_to_nanos",
]
