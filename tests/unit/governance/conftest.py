"""Fixtures of the budget engine tests: policies built from camelCase dicts."""

from __future__ import annotations

from typing import Any

from haltgate.governance.engine import Engine, PriceTable
from haltgate.governance.policy import GovernancePolicySpec

T0 = 1_800_000_000.0
"""A fixed epoch second (2027-01-15T08:00:00Z): an exact multiple of 3600."""


def make_spec(budgets: dict[str, Any] | None = None, **spec: Any) -> GovernancePolicySpec:
    """A policy spec from camelCase fields, as a user writes them."""
    doc: dict[str, Any] = {"budgets": budgets or {}}
    doc.update(spec)
    return GovernancePolicySpec.model_validate(doc)


def make_engine(budgets: dict[str, Any] | None = None, **spec: Any) -> Engine:
    """A builtin engine for a policy."""
    s = make_spec(budgets, **spec)
    return Engine(s, PriceTable.for_policy(s.pricing))
