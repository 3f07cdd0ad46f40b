"""A pool's database state as BudgetPool ``status`` fields (for the operator and the CLI).

Pure: takes what :meth:`PoolStore.status` returned, gives the fields of the CRD's status
schema (``state``, ``reason``, ``spentCalls``, ``spentTokens``, ``spentUSD``), which the
``kubectl get bpool`` columns show. The operator owns ``members`` (policies naming the
pool) and the conditions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["status_fields"]

_PICO = 10**12


def status_fields(db: Mapping[str, Any] | None) -> dict[str, Any]:
    """BudgetPool status fields from the pool database (empty if the pool is not there)."""
    if db is None:
        return {}
    dims = db.get("dimensions") or {}

    def used(d: str) -> int:
        return max(0, int((dims.get(d) or {}).get("used") or 0))

    out: dict[str, Any] = {
        "state": db["state"],
        "reason": f"{db.get('code')}: {db.get('reason') or ''}".strip()
        if db["state"] == "Halted"
        else "",
        "spentCalls": used("calls"),
        "spentTokens": used("tokens"),
        "spentUSD": round(used("cost_pico") / _PICO, 6),
    }
    return out
