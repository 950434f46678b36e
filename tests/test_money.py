"""Pricing is a pure function: tables of usage → exact cost."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runapi.money import (
    Pricing,
    Usage,
    cost_nanos,
    cost_usd,
    nanos_to_usd,
    usd_to_nanos,
)

AIR = Pricing(input=Decimal("0.10"), output=Decimal("0.55"), cache_read=Decimal("0.02"), cache_write=Decimal("0"))
SONNET = Pricing(input=Decimal("3"), output=Decimal("15"), cache_read=Decimal("0.30"), cache_write=Decimal("3.75"))


@pytest.mark.parametrize(("usage", "pricing", "expected"), [
    (Usage(input_tokens=5, output_tokens=12), AIR, Decimal("0.0000071")),
    (Usage(input_tokens=1_000_000, output_tokens=1_000_000), AIR, Decimal("0.65")),
    (Usage.from_openai(prompt=5, completion=12, cached=3), AIR, Decimal("0.00000686")),
    (Usage.from_openai(prompt=1000, completion=0, cached=1000), AIR, Decimal("0.00002")),
    (Usage.from_anthropic(100, 10, cache_read=1000, cache_write=2000), SONNET, Decimal("0.00825")),
    (Usage(), AIR, Decimal("0")),
    (Usage(input_tokens=1), Pricing(input=Decimal("0.0001"), output=Decimal(0)), Decimal("0")),  # 1e-10 rounds to 0
    (Usage(input_tokens=5), Pricing(input=Decimal("0.0001"), output=Decimal(0)), Decimal("1E-9")),  # half up
])
def test_cost_is_exact(usage: Usage, pricing: Pricing, expected: Decimal) -> None:
    assert cost_usd(usage, pricing) == expected
    assert cost_nanos(usage, pricing) == int(expected * 1_000_000_000)


def test_openai_cached_tokens_are_part_of_prompt_tokens() -> None:
    usage = Usage.from_openai(prompt=100, completion=5, cached=40)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.prompt_tokens) == (60, 40, 100)


def test_anthropic_input_tokens_exclude_cache() -> None:
    usage = Usage.from_anthropic(input_tokens=60, output_tokens=5, cache_read=40, cache_write=10)
    assert (usage.input_tokens, usage.prompt_tokens) == (60, 110)


@pytest.mark.parametrize(("nanos", "text"), [(0, "0"), (7100, "0.0000071"), (10_000_000_000, "10"),
                                             (-1_500_000_000, "-1.5"), (1, "0.000000001")])
def test_nanos_render_as_plain_decimals(nanos: int, text: str) -> None:
    assert nanos_to_usd(nanos) == Decimal(text)
    assert format(nanos_to_usd(nanos), "f") == text
    assert usd_to_nanos(Decimal(text)) == nanos


@pytest.mark.parametrize("amount", ["0.0000000001", "Infinity", "-Infinity", "NaN", "1e10", "-1000000000.01"])
def test_amounts_that_cannot_be_a_ledger_entry_are_refused(amount: str) -> None:
    with pytest.raises(ValueError):
        usd_to_nanos(Decimal(amount))


_tokens = st.integers(min_value=0, max_value=10**9)
_prices = st.decimals(min_value=0, max_value=1000, places=9, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(usage=st.builds(Usage, _tokens, _tokens, _tokens, _tokens),
       pricing=st.builds(Pricing, _prices, _prices, _prices, _prices))
def test_integer_cost_equals_the_decimal_reference(usage: Usage, pricing: Pricing) -> None:
    """`cost_nanos` computes in integers on the hot path; it must equal the Decimal definition."""
    assert cost_nanos(usage, pricing) == usd_to_nanos(cost_usd(usage, pricing))


def test_prices_finer_than_a_nano_dollar_per_million_take_the_decimal_path() -> None:
    fine = Pricing(input=Decimal("0.0000000001"), output=Decimal("0.1234567891"))
    usage = Usage(input_tokens=7_000_000, output_tokens=3_000_001)
    assert cost_nanos(usage, fine) == usd_to_nanos(cost_usd(usage, fine))
