"""Fixtures of the SDK tests: the sidecar tests' stand-ins and sidecar factory, reused.

``governed(budgets)`` starts a sidecar in front of the stand-in LLM with those budgets and
returns the running sidecar; ``llm_requests(standins)`` counts what reached the stand-in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.sidecar.conftest import (  # noqa: F401  (fixtures re-exported for pytest)
    ADMIN_TOKEN,
    Running,
    SidecarFactory,
    Standins,
    base_policy,
    http_server,
    merge,
    sidecar_factory,
    standins,
)


def budgets_policy(budgets: dict[str, Any]) -> dict[str, Any]:
    """``policy_extra`` for ``sidecar_factory``: the given budgets."""
    return {"spec": {"budgets": budgets}}


def llm_requests(s: Standins) -> int:
    """Chat requests the stand-in LLM received (each retry counts)."""
    return sum(1 for r in s.received("llm").requests if r.path.endswith("/chat/completions"))


def refusals(sc: Any, code: str) -> int:
    """Refused calls with ``code`` the sidecar audited (each HTTP attempt is one)."""
    return len({r.decision_id for r in sc.audit.records if r.code == code})


def write_policy(tmp_path: Path, s: Standins, budgets: dict[str, Any]) -> Path:
    """A policy file for local (no sidecar) governance: the stand-ins with ``budgets``."""
    path = tmp_path / "local-policy.yaml"
    path.write_text(yaml.safe_dump(merge(base_policy(s), budgets_policy(budgets))))
    return path
