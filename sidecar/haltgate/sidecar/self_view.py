"""``GET /haltgate/v1/self`` on the explicit port: the agent's read-only view of its own run.

In a pod the agent cannot reach the admin API (17020: the iptables rules refuse it to every
UID but the sidecar's, and it needs the admin token, which also allows halt and reset). The
explicit port (17000) is the one the agent is meant to reach, so the view lives there:

* **read-only**: GET and HEAD only; nothing here changes the run;
* **no token**: it tells the agent only what its own refusals already tell it (halt,
  budgets used and left, its identity), never the admin token, the policy's Rego or the
  state of other runs;
* **not governed**: it is no call to an upstream, so it spends no budget and writes no
  audit record.

The path takes precedence over an upstream alias named ``haltgate`` (``docs/sidecar.md``).
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson
from aiohttp import web

from haltgate.sidecar.pipeline_request import PipelineRequest

__all__ = ["SELF_PATH", "SelfSource", "answer", "document", "is_self_request"]

SELF_PATH = "/haltgate/v1/self"
"""The view's path on the explicit port (origin-form requests only)."""


class SelfSource(Protocol):
    """What the view reads of the running sidecar (``haltgate.sidecar.server.Sidecar``)."""

    pipeline: Any
    governor: Any
    pool: Any

    def agent_identity(self) -> Any: ...


def is_self_request(raw_path: str) -> bool:
    """True for ``/haltgate/v1/self`` (with or without a query string)."""
    path = raw_path.partition("?")[0]
    return path == SELF_PATH or path == SELF_PATH + "/"


def document(source: SelfSource, now: float | None = None) -> dict[str, Any]:
    """The view: the run's id, identity, halt, budgets (used, reserved, limit, remaining)."""
    now = time.time() if now is None else now
    pipeline = source.pipeline
    halted = None
    if pipeline is not None:
        verdict = pipeline.budget.halted(now)
        if not verdict.allowed:
            halted = {
                "failure_type": verdict.failure_type.value if verdict.failure_type else None,
                "code": verdict.code,
                "message": verdict.message,
            }
    budget: dict[str, dict[str, float]] = {}
    if source.governor is not None:
        for name, entry in source.governor.snapshot(now)["budget"].items():
            used, reserved = float(entry.get("used", 0)), float(entry.get("reserved", 0))
            limit = float(entry["limit"])
            budget[name] = {
                "used": used,
                "reserved": reserved,
                "limit": limit,
                "remaining": max(0.0, limit - used - reserved),
            }
    pool = None
    snap = source.pool.snapshot() if source.pool is not None else None
    if snap is not None:
        pool = {"name": snap.get("pool"), "state": snap.get("state"), "halt": snap.get("halt")}
    identity = source.agent_identity().as_dict()
    return {
        "run_id": identity.get("run_id"),
        "agent": {k: v for k, v in identity.items() if k != "run_id"},
        "halted": halted,
        "budget": budget,
        "budget_engine": source.governor is not None,
        "pool": pool,
    }


def answer(request: PipelineRequest, source: SelfSource) -> web.Response:
    """The HTTP answer for a request on :data:`SELF_PATH`."""
    if request.method not in ("GET", "HEAD"):
        body = {
            "error": {
                "type": "invalid_request",
                "code": "read_only",
                "message": f"{SELF_PATH} is read-only: GET or HEAD",
            }
        }
        return web.Response(
            status=405,
            body=orjson.dumps(body),
            content_type="application/json",
            headers={"Allow": "GET, HEAD"},
        )
    return web.Response(
        body=orjson.dumps(document(source)),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
