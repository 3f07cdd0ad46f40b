"""Exact integer units for money and risk.

Budgets are compared and summed millions of times; binary floats would drift
(``0.1 + 0.2 != 0.3``) and make "never overspend" unprovable. So the engine keeps every
amount as a Python ``int`` and converts only at its edges:

- money: **picodollars** (1 USD = 10**12 pUSD). Prices are quoted in USD per one million
  tokens; a price with up to 6 decimals (``$0.075 / 1M``) is an integer number of
  picodollars *per token* (75,000), so ``tokens x price`` is exact with no rounding at all.
  Micro-dollars would not do: gpt-4o-mini input costs 0.15 micro-dollars per token.
- risk: **micro-risk** (1.0 risk = 10**6). Risk weights are policy numbers like 0.2.

Conversions from policy numbers go through ``Decimal(repr(x))`` (the shortest decimal that
round-trips the float), so ``5.00`` USD is exactly 5 * 10**12 pUSD.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

PICO_PER_USD = 10**12
"""Picodollars in one US dollar."""

PICO_PER_TOKEN_PER_USD_PER_MTOK = 10**6
"""A price of 1 USD per million tokens is 10**6 picodollars per token."""

MICRO_PER_RISK = 10**6
"""Micro-risk units in one unit of risk."""


def _decimal(value: float | int | str | Decimal) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        # repr() is the shortest string that round-trips: 0.1 -> "0.1", not 0.1000000000000000055
        return Decimal(repr(value))
    return Decimal(value)


def usd_to_pico(usd: float | int | str | Decimal) -> int:
    """Convert a dollar amount (a budget limit) to picodollars, rounding half-even."""
    return int((_decimal(usd) * PICO_PER_USD).to_integral_value(ROUND_HALF_EVEN))


def price_to_pico_per_token(usd_per_million: float | int | str | Decimal) -> int:
    """Convert a price in USD per 1M tokens to integer picodollars per token.

    Prices with more than 6 decimals (finer than 10**-12 USD per token) are rounded *up*:
    overestimating a price fails closed.
    """
    scaled = _decimal(usd_per_million) * PICO_PER_TOKEN_PER_USD_PER_MTOK
    return int(scaled.to_integral_value(ROUND_CEILING))


def pico_to_usd(pico: int) -> float:
    """Convert picodollars to a float dollar amount (for reports only, never for checks)."""
    return pico / PICO_PER_USD


def risk_to_micro(risk: float) -> int:
    """Convert a risk weight to micro-risk (round half-even at 10**-6)."""
    return round(risk * MICRO_PER_RISK)
