"""Model prices: the shipped, versioned price table plus the policy's overrides.

Prices are held as integer picodollars per token (see ``engine.units``), so every cost the
engine computes is exact. ``PriceTable.for_policy(spec.pricing)`` is what the sidecar
builds once per policy; the engine asks it for worst cases at reserve time and for actual
costs at settle time.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from haltgate.governance.engine.events import Usage
from haltgate.governance.engine.units import pico_to_usd, price_to_pico_per_token
from haltgate.governance.policy_budgets import ModelPrice, Pricing

SHIPPED_TABLE = "prices-2026-11.yaml"
"""File name (in ``haltgate.governance.data``) of the price table this release ships."""

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
"""Folder of the shipped price tables (``haltgate/governance/data``)."""

_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")
_LOOKUP_CACHE_MAX = 1024


class PriceTableError(ValueError):
    """A price table file is malformed."""


@dataclass(frozen=True, slots=True)
class Price:
    """A model's prices in integer picodollars per token."""

    input: int
    output: int
    cached_input: int
    cache_write: int
    reasoning: int
    max_output_tokens: int | None = None
    context_window: int | None = None
    """Largest prompt the model accepts (tokens); ``None``: not known."""
    worst_input: int = field(init=False, repr=False, compare=False)
    """The dearest input rate (fresh, cache read or cache write): worst cases use it."""
    worst_output: int = field(init=False, repr=False, compare=False)
    """The dearest output rate (visible or reasoning)."""

    def __post_init__(self) -> None:
        # Precomputed: worst_case_pico runs on every reservation.
        object.__setattr__(
            self, "worst_input", max(self.input, self.cached_input, self.cache_write)
        )
        object.__setattr__(self, "worst_output", max(self.output, self.reasoning))

    @classmethod
    def from_usd_per_million(
        cls,
        input: float,
        output: float,
        cached_input: float | None = None,
        cache_write: float | None = None,
        reasoning: float | None = None,
        max_output_tokens: int | None = None,
        context_window: int | None = None,
    ) -> Price:
        """Build from list prices (USD per 1M tokens); missing cache/reasoning prices default
        to the input/output price."""
        in_p = price_to_pico_per_token(input)
        out_p = price_to_pico_per_token(output)
        return cls(
            input=in_p,
            output=out_p,
            cached_input=in_p if cached_input is None else price_to_pico_per_token(cached_input),
            cache_write=in_p if cache_write is None else price_to_pico_per_token(cache_write),
            reasoning=out_p if reasoning is None else price_to_pico_per_token(reasoning),
            max_output_tokens=max_output_tokens,
            context_window=context_window,
        )

    @classmethod
    def from_model_price(cls, price: ModelPrice, max_output_tokens: int | None = None) -> Price:
        """Build from a policy ``ModelPrice``."""
        return cls.from_usd_per_million(
            price.input,
            price.output,
            price.cached_input,
            price.cache_write,
            price.reasoning,
            max_output_tokens,
            price.context_window,
        )

    def cost_pico(self, usage: Usage) -> int:
        """Exact cost of a usage in picodollars.

        Input tokens split into cache reads, cache writes and fresh tokens; output tokens
        into reasoning and visible tokens (``Usage`` documents the conventions). Parts
        larger than their whole are clamped, so a malformed usage never costs less than its
        fresh tokens, and negative counts count as zero.
        """
        # Conditional expressions, not min()/max(): this runs on every settled LLM call.
        total_in = usage.input_tokens
        if total_in < 0:
            total_in = 0
        total_out = usage.output_tokens
        if total_out < 0:
            total_out = 0
        cost = total_in * self.input + total_out * self.output
        cached = usage.cached_input_tokens
        written = usage.cache_write_tokens
        reasoning = usage.reasoning_tokens
        if cached > 0 or written > 0:
            cached = 0 if cached < 0 else (total_in if cached > total_in else cached)
            rest = total_in - cached
            written = 0 if written < 0 else (rest if written > rest else written)
            cost += cached * (self.cached_input - self.input) + written * (
                self.cache_write - self.input
            )
        if reasoning > 0:
            reasoning = total_out if reasoning > total_out else reasoning
            cost += reasoning * (self.reasoning - self.output)
        return cost

    def worst_case_pico(self, max_input_tokens: int, max_output_tokens: int) -> int:
        """Upper bound of a call's cost: every token at the dearest rate of its side."""
        return (max_input_tokens if max_input_tokens > 0 else 0) * self.worst_input + (
            max_output_tokens if max_output_tokens > 0 else 0
        ) * self.worst_output


@dataclass(frozen=True, slots=True)
class ShippedTable:
    """A parsed price table file."""

    version: str
    effective: str
    models: Mapping[str, Price]
    aliases: Mapping[str, str]


def parse_table(data: Mapping[str, Any]) -> ShippedTable:
    """Validate and convert a price table document (the YAML's content)."""
    try:
        version = str(data["version"])
        effective = str(data["effective"])
        raw_models = data["models"]
        raw_aliases = data.get("aliases") or {}
    except (KeyError, TypeError) as e:
        raise PriceTableError(f"price table misses a required key: {e}") from e
    if data.get("currency", "USD") != "USD" or data.get("unit", "per_1m_tokens") != (
        "per_1m_tokens"
    ):
        raise PriceTableError("price table must be in USD per 1M tokens")
    models: dict[str, Price] = {}
    for name, fields in raw_models.items():
        fields = dict(fields)
        max_out = fields.pop("max_output_tokens", None)
        try:
            mp = ModelPrice.model_validate(fields)
        except ValueError as e:
            raise PriceTableError(f"price of model {name!r}: {e}") from e
        models[str(name)] = Price.from_model_price(mp, max_out)
    aliases = {str(k): str(v) for k, v in raw_aliases.items()}
    for alias, target in aliases.items():
        if target not in models:
            raise PriceTableError(f"alias {alias!r} points to unknown model {target!r}")
    return ShippedTable(version, effective, models, aliases)


@lru_cache(maxsize=4)
def load_shipped(name: str = SHIPPED_TABLE) -> ShippedTable:
    """Load a price table shipped in ``haltgate.governance.data`` (cached)."""
    # haltgate.governance is a namespace package (no __init__): resolve from this file.
    text = (DATA_DIR / name).read_text("utf-8")
    return parse_table(yaml.safe_load(text))


def load_table_file(path: str | Path) -> ShippedTable:
    """Load a price table from a file (YAML or JSON, same layout as the shipped one).

    For the chart: a newer table mounted into the sidecar replaces the shipped one without
    a new haltgate release (``PriceTable.for_policy(pricing, load_table_file(path))``).
    Raises PriceTableError for a malformed file.
    """
    try:
        data = yaml.safe_load(Path(path).read_text("utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise PriceTableError(f"cannot read price table {path}: {e}") from e
    if not isinstance(data, dict):
        raise PriceTableError(f"price table {path} is not a mapping")
    return parse_table(data)


def normalise_model(model: str) -> str:
    """Strip a provider prefix (``openai/gpt-4o``) and a date snapshot suffix."""
    name = model.strip().lower()
    if "/" in name:
        name = name.rsplit("/", 1)[1]
    return _DATE_SUFFIX.sub("", name)


class PriceTable:
    """Prices by model: policy overrides, then the shipped table, then the policy default.

    Lookup order for a model name: exact policy override; policy override globs (the
    longest matching pattern wins, ties by name); exact shipped entry; shipped alias;
    the same with the name normalised (lower case, provider prefix and date suffix
    removed); the policy's default price when ``unknownModel: default``; else unknown
    (``None``), and the engine refuses the call with ``unknown_model_price``.
    """

    __slots__ = ("_cache", "_default", "_exact", "_globs", "_shipped", "unknown_model")

    def __init__(
        self,
        shipped: ShippedTable,
        overrides: Mapping[str, Price] | None = None,
        unknown_model: Literal["deny", "default"] = "deny",
        default: Price | None = None,
    ) -> None:
        if unknown_model == "default" and default is None:
            raise ValueError("unknownModel 'default' needs a default price")
        self._shipped = shipped
        overrides = dict(overrides or {})
        self._exact = {k: v for k, v in overrides.items() if not _is_glob(k)}
        self._globs = sorted(
            ((k, v) for k, v in overrides.items() if _is_glob(k)),
            key=lambda kv: (-len(kv[0]), kv[0]),
        )
        self.unknown_model = unknown_model
        self._default = default
        self._cache: dict[str, Price | None] = {}

    @classmethod
    def for_policy(cls, pricing: Pricing, shipped: ShippedTable | None = None) -> PriceTable:
        """The table a policy asks for: the shipped table plus ``spec.pricing``."""
        base = shipped if shipped is not None else load_shipped()
        overrides = {name: Price.from_model_price(mp) for name, mp in pricing.models.items()}
        default = None if pricing.default is None else Price.from_model_price(pricing.default)
        return cls(base, overrides, pricing.unknown_model, default)

    @property
    def version(self) -> str:
        """Version of the shipped table underneath (e.g. ``2026-11``)."""
        return self._shipped.version

    @property
    def effective(self) -> str:
        """Date from which the shipped prices apply."""
        return self._shipped.effective

    def lookup(self, model: str) -> Price | None:
        """The price of a model, or None when unknown and the policy denies unknown models."""
        try:
            return self._cache[model]
        except KeyError:
            pass
        price = self._resolve(model)
        if len(self._cache) >= _LOOKUP_CACHE_MAX:
            # Model names come from agents' requests: bound the cache, never grow forever.
            self._cache.clear()
        self._cache[model] = price
        return price

    def _resolve(self, model: str) -> Price | None:
        for name in dict.fromkeys((model, normalise_model(model))):
            found = self._exact.get(name)
            if found is not None:
                return found
            for pattern, price in self._globs:
                if fnmatch.fnmatchcase(name, pattern):
                    return price
            found = self._shipped.models.get(name)
            if found is not None:
                return found
            alias = self._shipped.aliases.get(name)
            if alias is not None:
                return self._shipped.models[alias]
        return self._default if self.unknown_model == "default" else None

    def max_output_tokens(self, model: str) -> int | None:
        """The model's largest completion (worst case when a request sets no max_tokens)."""
        price = self.lookup(model)
        return None if price is None else price.max_output_tokens

    def context_window(self, model: str) -> int | None:
        """The model's largest prompt in tokens (``None``: unknown model or window)."""
        price = self.lookup(model)
        return None if price is None else price.context_window

    def cost_pico(self, usage: Usage, model: str | None = None) -> int | None:
        """Exact cost in picodollars of a usage, priced as ``usage.model`` or ``model``."""
        name = usage.model or model
        price = None if name is None else self.lookup(name)
        if price is None and model is not None and name != model:
            price = self.lookup(model)
        return None if price is None else price.cost_pico(usage)

    def cost(self, usage: Usage, model: str | None = None) -> float:
        """Cost in USD (a float for reports); raises KeyError for an unpriced model."""
        pico = self.cost_pico(usage, model)
        if pico is None:
            raise KeyError(f"no price for model {usage.model or model!r}")
        return pico_to_usd(pico)

    def worst_case_pico(
        self, model: str, max_input_tokens: int, max_output_tokens: int
    ) -> int | None:
        """Upper bound of a call's cost in picodollars; None for an unpriced model."""
        price = self.lookup(model)
        return None if price is None else price.worst_case_pico(max_input_tokens, max_output_tokens)

    def worst_case(self, model: str, max_input_tokens: int, max_output_tokens: int) -> float:
        """Upper bound of a call's cost in USD; raises KeyError for an unpriced model."""
        pico = self.worst_case_pico(model, max_input_tokens, max_output_tokens)
        if pico is None:
            raise KeyError(f"no price for model {model!r}")
        return pico_to_usd(pico)


def _is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")
