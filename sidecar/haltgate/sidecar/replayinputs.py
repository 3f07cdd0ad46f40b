"""The ``replay`` part of a call's audit record: what decided, and the engine's inputs.

Built from what the pipeline's stages left on the :class:`~haltgate.sidecar.call.Call`:
the stages the call went through (in pipeline order), the stage that decided a refusal,
and, once the call reached the budget stage, the ``Reserve`` event, the engine's view of
the run just before it (``engine.snapshot``) and the decision the engine made. No payload
value is kept: names are the engine's state keys, request identity is a digest, so the
record needs no redaction for it (``docs/audit.md``, "Explain and replay").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from haltgate.governance.engine.core import Engine
from haltgate.governance.engine.snapshot import capture, decision_doc, reserve_doc
from haltgate.governance.errors import HaltgateError

if TYPE_CHECKING:
    from haltgate.sidecar.call import Call

__all__ = ["REPLAY_FORMAT", "replay_inputs"]

REPLAY_FORMAT = 1
"""Version of the record's ``replay`` layout (``"v"``)."""

_POOL_CODES = ("pool_", "chain_", "invalid_chain")


def _blocked(findings: list[Mapping[str, Any]]) -> bool:
    return any(f.get("action") == "block" and not f.get("monitor_only") for f in findings)


def _early_stage(call: Call, err: HaltgateError | None) -> list[dict[str, Any]]:
    """Stages after tools and before the budget: guardrails, OPA, pool."""
    spec = call.controls.spec
    stages: list[dict[str, Any]] = [
        {
            "stage": "guardrails",
            "findings": len(call.findings),
            "result": "deny" if err is not None and _blocked(call.findings) else "pass",
        }
    ]
    if stages[0]["result"] == "deny":
        return stages
    pool_refused = err is not None and err.code.startswith(_POOL_CODES)
    if spec.opa is not None:
        opa_refused = err is not None and call.reservation is None and not pool_refused
        stages.append({"stage": "opa", "result": "deny" if opa_refused else "allow"})
        if opa_refused:
            return stages
    if spec.pool is not None or pool_refused:
        stages.append({"stage": "pool", "result": "deny" if pool_refused else "allow"})
    return stages


def stages_of(call: Call, err: HaltgateError | None) -> tuple[list[dict[str, Any]], str | None]:
    """The stages the call went through and the one that refused it (``None``: none did).

    The refusing stage always ends the list with ``result`` ``deny`` (or ``error`` for a
    failure after the decision)."""
    if call.classified is None:
        return [{"stage": "request", "result": "deny"}], "request"
    stages: list[dict[str, Any]] = []
    authz = call.authz
    if authz is None and not call.teardown:
        # Refused between classification and tool rules: a halted run or a destination
        # that is this pod (the halted refusal carries the halt's failure type).
        stage = "halted" if err is not None and err.failure_type is not None else "destination"
        return [{"stage": stage, "result": "deny"}], stage
    if authz is not None:
        stages.append(
            {"stage": "tools", "rule": authz.rule, "result": "allow" if authz.allowed else "deny"}
        )
        if not authz.allowed:
            return stages, "tools"
    if call.classified.mcp is not None and call.mcp is None and not call.teardown:
        # spec.mcp refused one of the messages (it runs right after the tool rules).
        stages.append({"stage": "mcp", "result": "deny"})
        return stages, "mcp"
    if call.flow_stage is not None:
        # spec.flows (right after the tool rules): the rule, the source that tainted the
        # run and the sink; refused, or let through on an operator's approval.
        stages.append(dict(call.flow_stage))
        if call.flow_stage.get("result") == "deny":
            return stages, "flows"
    stages.extend(_early_stage(call, err))
    if stages[-1]["result"] == "deny":
        return stages, stages[-1]["stage"]
    verdict = call.reservation
    if verdict is not None:
        stages.append({"stage": "budget", "result": "allow" if verdict.allowed else "deny"})
        if not verdict.allowed:
            return stages, "budget"
    if err is None:
        return stages, None
    # Failed after the decision (audit trail, upstream), or a stage this list does not
    # name: the error's own code says which.
    stage = (
        "audit"
        if err.code.startswith("audit")
        else "upstream"
        if verdict is not None
        else "pipeline"
    )
    stages.append(
        {"stage": stage, "result": "error" if stage != "pipeline" else "deny", "code": err.code}
    )
    return stages, stage


def monitor_stages(
    call: Call, err: HaltgateError | None
) -> tuple[list[dict[str, Any]], str | None]:
    """:func:`stages_of` in monitor mode: the stages that would have refused the call
    (``would_deny``, in pipeline order; it went on), then the stage that did refuse or
    fail it, if any (the boundary, an EXTERNAL halt, the pool, the audit trail, the
    upstream: never monitored)."""
    stages: list[dict[str, Any]] = [
        {"stage": stage, "result": "would_deny", "code": e.code} for stage, e in call.would_refuse
    ]
    if err is None:
        return stages, None
    verdict = call.reservation
    if err.code.startswith(_POOL_CODES):
        stage, result = "pool", "deny"
    elif err.code.startswith("audit"):
        stage, result = "audit", "error"
    elif call.forward_started:
        stage, result = "upstream", "error"
    elif verdict is not None and not verdict.allowed:
        stage, result = "budget", "deny"
    elif err.failure_type is not None:
        stage, result = "halted", "deny"
    else:
        stage, result = "pipeline", "deny"
    stages.append({"stage": stage, "result": result, "code": err.code})
    return stages, stage


def replay_inputs(call: Call, phase: str, err: HaltgateError | None) -> dict[str, Any]:
    """The record's ``replay`` document for ``call`` (refused with ``err``, if any).

    The budget inputs go into the record that states the budget's decision: the intent of
    a call that went on, the outcome of one refused at (or right after) the budget. The
    outcome of a call whose intent was written refers to it (``"budget": "intent"``)."""
    controls = call.controls
    if controls.monitor and call.classified is not None:
        stages, decided_by = monitor_stages(call, err)
    else:
        stages, decided_by = stages_of(call, err)
    doc: dict[str, Any] = {
        "v": REPLAY_FORMAT,
        "policy": controls.digest,
        "engine": controls.spec.engine.type,
        "stages": stages,
        "decided_by": decided_by,
        "risk": call.risk,
    }
    verdict = call.reservation
    inputs = verdict.inputs if verdict is not None else None
    if (
        phase == "outcome"
        and verdict is not None
        and verdict.allowed
        and decided_by not in ("audit", "pipeline")
    ):
        doc["budget"] = "intent"
    elif verdict is not None and inputs is not None:
        engine, before, event = inputs
        budget: dict[str, Any] = {"event": reserve_doc(event), "decision": decision_doc(verdict)}
        if isinstance(engine, Engine):
            doc["prices"] = engine.prices.version
            budget["before"] = capture(engine, before, event)
        doc["budget"] = budget
    return doc
