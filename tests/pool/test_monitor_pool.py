"""A member in monitor mode (``spec.enforcement: monitor``) draws from its BudgetPool like
any member: its own budget's would-refusals still go through the pool, which is enforced.

Three calls on a lease of ten: below the client's background renewal (half the lease), so
the lease is returned whole at the stop (a renewal in flight at the stop is another matter,
see the report of branch p1-monitor)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.pool.test_sidecars import apply_pool, call, http_standin, pool_row, sidecars

pytestmark = pytest.mark.postgres

__all__ = ["http_standin", "sidecars"]  # fixtures used by name


def test_monitor_mode_over_its_own_budget_still_spends_from_the_pool(
    pool_dsn: str, sidecars: Any, tmp_path: Path
) -> None:
    """Monitor mode lets calls over the member's own budget through; the pool (enforced,
    shared) is charged each of them, and nothing stays reserved."""
    apply_pool(pool_dsn, tmp_path, "watched", {"calls": {"limit": 100}})
    member = sidecars("watcher", "watched", {"calls": {"limit": 1}}, enforcement="monitor")
    sidecars.ready(member)
    statuses = [call(member.url("tool", "/items"))[0] for _ in range(3)]
    assert statuses == [200] * 3
    member.proc.stop()  # SIGTERM: returns its lease
    row = pool_row(pool_dsn, "watched")
    assert (row["calls_used"], row["calls_leased"], row["holders"]) == (3, 0, [])
