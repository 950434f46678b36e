"""Exact money: integer nano-dollars inside, `Decimal` USD at the edges.

Token prices are USD per 1M tokens; media prices (`UnitPricing`) are USD per image, video or
second. A token generation's cost is the exact sum
`Σ tokens × price / 1,000,000` over its four token classes, rounded once, half up,
to the nano-dollar (1e-9 USD). With catalog prices of at most three decimals the
rounding never changes anything. Pure functions: no I/O, no clock, no floats.
"""

from __future__ import annotations

import functools
from decimal import ROUND_HALF_UP, Decimal

import msgspec

NANOS_PER_USD = 1_000_000_000
_NANO = Decimal("1e-9")
_PER_MILLION = Decimal(1_000_000)


class Pricing(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """USD per 1M tokens for each token class."""

    input: Decimal
    output: Decimal
    cache_read: Decimal = Decimal(0)
    cache_write: Decimal = Decimal(0)


class PriceOption(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A price per unit for requests of this `size` and/or `quality` ("" matches any)."""

    price: Decimal
    size: str = ""
    quality: str = ""


class UnitPricing(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """USD per unit (one image, one video, one second of video): `price`, unless the first of
    `options` that matches the request's size and quality says otherwise."""

    price: Decimal
    options: list[PriceOption] = []

    def price_for(self, size: str = "", quality: str = "") -> Decimal:
        """The price of one unit at `size` and `quality` (the first matching option, else `price`)."""
        for option in self.options:
            if option.size in ("", size) and option.quality in ("", quality):
                return option.price
        return self.price

    def max_price(self) -> Decimal:
        """The most one unit can cost, whatever the request asks for."""
        return max([self.price, *(option.price for option in self.options)])


def unit_cost_nanos(pricing: UnitPricing, units: int, size: str = "", quality: str = "") -> int:
    """The exact cost of `units` units (images, videos or seconds) at `size`/`quality`, in
    nano-dollars (ValueError if a unit price is finer than a nano-dollar)."""
    if units < 0:
        raise ValueError("a unit count is never negative")
    return usd_to_nanos(pricing.price_for(size, quality) * units)


class Usage(msgspec.Struct, frozen=True):
    """Token counts, normalised: `input_tokens` excludes cache reads and cache writes."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0  # informational: already inside output_tokens

    @property
    def prompt_tokens(self) -> int:
        """OpenAI's `prompt_tokens`: everything read, cached or not."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @classmethod
    def from_openai(cls, prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> Usage:
        """OpenAI semantics: `cached_tokens` is part of `prompt_tokens`."""
        cached = max(0, min(cached, prompt))
        return cls(input_tokens=prompt - cached, output_tokens=completion, cache_read_tokens=cached,
                   reasoning_tokens=reasoning)

    @classmethod
    def from_anthropic(cls, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0) -> Usage:
        """Anthropic semantics: `input_tokens` excludes cache reads and cache creation."""
        return cls(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read,
                   cache_write_tokens=cache_write)


def cost_usd(usage: Usage, pricing: Pricing) -> Decimal:
    """The exact cost of `usage` at `pricing`, in USD, rounded half up to the nano-dollar."""
    total = (
        usage.input_tokens * pricing.input
        + usage.output_tokens * pricing.output
        + usage.cache_read_tokens * pricing.cache_read
        + usage.cache_write_tokens * pricing.cache_write
    ) / _PER_MILLION
    return total.quantize(_NANO, rounding=ROUND_HALF_UP)


def cost_nanos(usage: Usage, pricing: Pricing) -> int:
    """`cost_usd` in integer nano-dollars, computed in integers on the hot path (the same result:
    prices with at most 9 decimals are whole nano-dollars per 1M tokens; others take `cost_usd`)."""
    rates = _nano_rates(pricing)
    if rates is None:
        return usd_to_nanos(cost_usd(usage, pricing))
    total = (usage.input_tokens * rates[0] + usage.output_tokens * rates[1]
             + usage.cache_read_tokens * rates[2] + usage.cache_write_tokens * rates[3])
    if total < 0:  # token counts are never negative; keep the reference rounding for any odd input
        return usd_to_nanos(cost_usd(usage, pricing))
    return (total + 500_000) // 1_000_000  # ROUND_HALF_UP of total / 1e6


@functools.lru_cache(maxsize=4096)
def _nano_rates(pricing: Pricing) -> tuple[int, int, int, int] | None:
    """Each price as whole nano-dollars per 1M tokens, or None if one has more than 9 decimals."""
    rates = []
    for price in (pricing.input, pricing.output, pricing.cache_read, pricing.cache_write):
        scaled = price * NANOS_PER_USD
        if not scaled.is_finite() or scaled != scaled.to_integral_value():
            return None
        rates.append(int(scaled))
    return rates[0], rates[1], rates[2], rates[3]


MAX_ENTRY_USD = Decimal(1_000_000_000)  # one ledger entry; keeps every sum inside a 64-bit column


def usd_to_nanos(amount: Decimal) -> int:
    """Convert USD to nano-dollars; refuses non-finite amounts, more than $1e9, and amounts finer
    than a nano-dollar (ValueError)."""
    if not amount.is_finite() or abs(amount) > MAX_ENTRY_USD:
        raise ValueError(f"{amount} is not an amount of USD between -1e9 and 1e9")
    nanos = amount * NANOS_PER_USD
    if nanos != nanos.to_integral_value():
        raise ValueError(f"{amount} USD is finer than a nano-dollar")
    return int(nanos)


def nanos_to_usd(nanos: int) -> Decimal:
    """Integer nano-dollars as an exact `Decimal` USD, normalised (no trailing zeros)."""
    value = (Decimal(nanos) / NANOS_PER_USD).quantize(_NANO)
    normalised = value.normalize()
    # normalize() may use an exponent ("1E+1"); keep a plain positional form.
    exponent = normalised.as_tuple().exponent  # an int: the value is finite
    return normalised if isinstance(exponent, int) and exponent <= 0 else value.quantize(Decimal(1))


def estimate_tokens(text_bytes: int) -> int:
    """A generous token estimate for `text_bytes` bytes of UTF-8 text (about 3 bytes a token)."""
    return (text_bytes + 2) // 3
