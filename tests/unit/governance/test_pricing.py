"""Golden tests for the price table and the cost math (exact picodollars)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from haltgate.governance.engine import Usage
from haltgate.governance.engine.units import (
    price_to_pico_per_token,
    usd_to_pico,
)
from haltgate.governance.policy_budgets import Pricing
from haltgate.governance.pricing import (
    DATA_DIR,
    SHIPPED_TABLE,
    Price,
    PriceTable,
    PriceTableError,
    load_shipped,
    load_table_file,
    normalise_model,
    parse_table,
)

SHIPPED = PriceTable.for_policy(Pricing())

# (model, usage, expected picodollars) -- computed by hand from the list prices.
GOLDEN = [
    # gpt-4o: 800 fresh x $2.50 + 200 cached x $1.25 + 500 out x $10 (per 1M)
    ("gpt-4o", Usage(1000, 500, cached_input_tokens=200), 7_250_000_000),
    # gpt-4o-mini: 1M in x $0.15 + 1M out x $0.60 = $0.75
    ("gpt-4o-mini", Usage(1_000_000, 1_000_000), 750_000_000_000),
    # Anthropic dated snapshot: 2000 fresh x $3 + 6000 read x $0.30 + 2000 write x $3.75
    # + 1000 out x $15
    (
        "claude-sonnet-4-5-20250929",
        Usage(10_000, 1000, cached_input_tokens=6000, cache_write_tokens=2000),
        30_300_000_000,
    ),
    # o3: reasoning tokens are part of output and priced as output by default
    ("o3", Usage(500, 3000, reasoning_tokens=2500), 25_000_000_000),
    # the May 2024 gpt-4o snapshot has its own (higher) price: exact entry beats stripping
    ("gpt-4o-2024-05-13", Usage(1000, 1000), 20_000_000_000),
    # the dated mini snapshot falls back to gpt-4o-mini
    ("gpt-4o-mini-2024-07-18", Usage(1000, 0), 150_000_000),
    # gpt-5-nano cached input: $0.005 / 1M
    ("gpt-5-nano", Usage(1000, 0, cached_input_tokens=1000), 5_000_000),
    # provider prefix and alias
    ("anthropic/claude-opus-4-20250514", Usage(1000, 1000), 90_000_000_000),
    ("claude-haiku-4-5", Usage(0, 0), 0),
]


@pytest.mark.parametrize(("model", "usage", "expected"), GOLDEN)
def test_golden_costs(model: str, usage: Usage, expected: int) -> None:
    assert SHIPPED.cost_pico(usage, model) == expected


def test_cost_in_dollars_is_the_exact_quotient() -> None:
    assert SHIPPED.cost(Usage(1000, 500, cached_input_tokens=200), "gpt-4o") == 0.00725


def test_usage_model_wins_over_the_requested_model() -> None:
    # Requested gpt-4o, provider answered with a gpt-4o-mini snapshot: priced as mini.
    usage = Usage(1000, 0, model="gpt-4o-mini-2024-07-18")
    assert SHIPPED.cost_pico(usage, "gpt-4o") == 150_000_000


def test_unknown_usage_model_falls_back_to_the_requested_model() -> None:
    usage = Usage(1000, 0, model="gpt-4o-experimental-build")
    assert SHIPPED.cost_pico(usage, "gpt-4o") == 2_500_000_000


def test_parts_larger_than_the_whole_are_clamped() -> None:
    # 5000 "cached" of 1000 input: all 1000 priced as cached, never negative fresh tokens.
    usage = Usage(1000, 10, cached_input_tokens=5000, reasoning_tokens=99)
    assert SHIPPED.cost_pico(usage, "gpt-4o") == 1000 * 1_250_000 + 10 * 10_000_000


def test_negative_counts_cost_nothing() -> None:
    assert SHIPPED.cost_pico(Usage(-5, -5), "gpt-4o") == 0


def test_worst_case_takes_the_dearest_rate_of_each_side() -> None:
    # Sonnet: input side max(3, 3.75 cache write, 0.30) = 3.75; output 15 (per 1M)
    assert SHIPPED.worst_case_pico("claude-sonnet-4-5", 1000, 1000) == 18_750_000_000
    assert SHIPPED.worst_case("claude-sonnet-4-5", 1000, 1000) == 0.01875


@pytest.mark.parametrize("usage", [Usage(7, 3), Usage(100, 50, 20, 30, 10)])
def test_actual_cost_never_exceeds_worst_case(usage: Usage) -> None:
    for model in ("gpt-4o", "claude-sonnet-4-5", "o1", "claude-opus-4-5"):
        worst = SHIPPED.worst_case_pico(model, usage.input_tokens, usage.output_tokens)
        cost = SHIPPED.cost_pico(usage, model)
        assert cost is not None and worst is not None and cost <= worst


def test_sums_stay_exact_over_many_calls() -> None:
    total = sum(SHIPPED.cost_pico(Usage(1, 0), "gpt-4o-mini") or 0 for _ in range(10_000))
    assert total == 1_500_000_000  # $0.0015 exactly; float sums of 1.5e-7 drift
    assert sum([1.5e-7] * 10_000) != 0.0015


def test_unknown_model_denied_by_default() -> None:
    assert SHIPPED.lookup("llama-3-70b") is None
    assert SHIPPED.cost_pico(Usage(10, 10), "llama-3-70b") is None
    with pytest.raises(KeyError):
        SHIPPED.worst_case("llama-3-70b", 1, 1)


def test_unknown_model_priced_by_policy_default() -> None:
    table = PriceTable.for_policy(
        Pricing.model_validate(
            {"unknownModel": "default", "default": {"input": 1.0, "output": 2.0}}
        )
    )
    assert table.cost_pico(Usage(1000, 1000), "llama-3-70b") == 3_000_000_000
    # a known model keeps its own price
    assert table.cost_pico(Usage(1000, 0), "gpt-4o") == 2_500_000_000


def test_default_without_price_is_refused() -> None:
    with pytest.raises(ValueError, match="default price"):
        PriceTable(load_shipped(), unknown_model="default")


def test_policy_overrides_exact_then_longest_glob_then_shipped() -> None:
    table = PriceTable.for_policy(
        Pricing.model_validate(
            {
                "models": {
                    "gpt-4o": {"input": 1.0, "output": 1.0},
                    "my-*": {"input": 0.5, "output": 0.5},
                    "my-llama-*": {"input": 0.1, "output": 0.2},
                }
            }
        )
    )
    assert table.cost_pico(Usage(1000, 0), "gpt-4o") == 1_000_000_000
    assert table.cost_pico(Usage(1000, 1000), "my-llama-3") == 300_000_000
    assert table.cost_pico(Usage(1000, 0), "my-mistral") == 500_000_000
    assert table.cost_pico(Usage(1000, 0), "gpt-4o-mini") == 150_000_000


def test_override_cache_prices_default_to_input_and_output() -> None:
    price = Price.from_usd_per_million(2.0, 8.0)
    assert price.cached_input == price.cache_write == price.input == 2_000_000
    assert price.reasoning == price.output == 8_000_000


def test_unit_conversions_are_exact() -> None:
    assert usd_to_pico(5.00) == 5 * 10**12
    assert usd_to_pico(0.1) == 10**11
    assert price_to_pico_per_token(0.075) == 75_000
    # sub-picodollar prices round up (fail closed)
    assert price_to_pico_per_token("0.0000001") == 1


def test_normalise_model() -> None:
    assert normalise_model("OpenAI/GPT-4o-2024-08-06") == "gpt-4o"
    assert normalise_model("claude-3-5-haiku-20241022") == "claude-3-5-haiku"
    assert normalise_model("o3") == "o3"


def test_shipped_table_is_versioned_and_complete() -> None:
    raw = yaml.safe_load((DATA_DIR / SHIPPED_TABLE).read_text())
    table = load_shipped()
    assert table.version == "2026-11" and SHIPPED_TABLE == f"prices-{table.version}.yaml"
    assert table.effective == raw["effective"]
    for family in (
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "o3",
        "o4-mini",
        "gpt-5",
        "gpt-5-mini",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-opus-4-5",
        "claude-opus-4-1",
    ):
        assert family in table.models, family
    for name, price in table.models.items():
        assert price.cached_input <= price.input, name  # a cache read is never dearer
        if not name.startswith("text-embedding"):
            assert price.max_output_tokens, name
    assert SHIPPED.max_output_tokens("gpt-4o-2024-08-06") == 16384


def test_malformed_tables_are_refused() -> None:
    with pytest.raises(PriceTableError, match="required key"):
        parse_table({"models": {}})
    with pytest.raises(PriceTableError, match=r"negative|greater"):
        parse_table({"version": "x", "effective": "y", "models": {"m": {"input": -1, "output": 1}}})
    with pytest.raises(PriceTableError, match="unknown model"):
        parse_table({"version": "x", "effective": "y", "models": {}, "aliases": {"a": "b"}})
    with pytest.raises(PriceTableError, match="USD"):
        parse_table({"version": "x", "effective": "y", "models": {}, "currency": "EUR"})


def test_lookup_cache_is_bounded() -> None:
    table = PriceTable.for_policy(Pricing())
    for i in range(3000):
        table.lookup(f"unknown-{i}")
    assert len(table._cache) <= 1024


def test_a_mounted_table_replaces_the_shipped_one(tmp_path: Path) -> None:
    path = tmp_path / "prices-2027-01.yaml"
    path.write_text(
        'version: "2027-01"\neffective: "2027-01-01"\n'
        "models:\n  gpt-4o: {input: 2.0, output: 8.0}\n"
    )
    table = PriceTable.for_policy(Pricing(), load_table_file(path))
    assert table.version == "2027-01"
    assert table.cost_pico(Usage(1000, 0), "gpt-4o") == 2_000_000_000
    assert table.lookup("gpt-4o-mini") is None  # the mounted table is the whole table
    (tmp_path / "bad.yaml").write_text("- a list")
    with pytest.raises(PriceTableError, match="not a mapping"):
        load_table_file(tmp_path / "bad.yaml")
    with pytest.raises(PriceTableError, match="cannot read"):
        load_table_file(tmp_path / "missing.yaml")
