"""Explain a decision and re-derive it from its audit record (``haltgate audit explain``).

A decision's records (intent and outcome) carry ``replay`` (see ``sidecar/replayinputs``):
the policy digest, the stages the call went through, the stage that refused it, and, once
the call reached the budget stage, the engine's ``Reserve`` event, the engine's view of the
run just before it and the decision it made. :func:`rederive` steps the policy's engine on
that view and compares its answer with the recorded one, field by field, and checks that
the record's own fields (id, time, request digest, decision, code) agree with the inputs.
Any difference is a mismatch: an edited record, or an engine that no longer decides the
same (``docs/audit.md``, "Explain and replay").

Stages before the budget (tool rules, guardrails, OPA, pool) read the request itself,
which the record does not keep: for them the record is checked for consistency (the
refusing stage, the decision and the code agree), and the document says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from haltgate.governance.audit.policies import PolicyStore
from haltgate.governance.engine import codes
from haltgate.governance.engine.core import Engine
from haltgate.governance.engine.events import Reserve, event_from_dict
from haltgate.governance.engine.snapshot import SnapshotError, decision_doc, rebuild
from haltgate.governance.engine.units import PICO_PER_USD

__all__ = ["ExplainError", "explain", "rederive", "render_text"]

REPLAY_FORMAT = 1
POLICY_STAGES = frozenset(
    {
        "request",
        "halted",
        "destination",
        "tools",
        "mcp",
        "flows",
        "guardrails",
        "opa",
        "pool",
        "budget",
        "pipeline",
    }
)
"""Stages whose refusal is a policy decision (the others are failures after it)."""


class ExplainError(Exception):
    """The decision cannot be explained (not found, policy not given, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _diff(recorded: Any, replayed: Any, path: str, out: list[str]) -> None:
    if isinstance(recorded, Mapping) and isinstance(replayed, Mapping):
        for key in sorted(set(recorded) | set(replayed)):
            _diff(recorded.get(key), replayed.get(key), f"{path}.{key}", out)
    elif recorded != replayed or (
        type(recorded) is not type(replayed)
        and not (isinstance(recorded, (int, float)) and isinstance(replayed, (int, float)))
    ):
        out.append(f"{path}: recorded {recorded!r}, replayed {replayed!r}")


def _consistency(record: Mapping[str, Any], replay: Mapping[str, Any], out: list[str]) -> None:
    """The record's own fields must agree with what its inputs say decided."""
    decided_by = replay.get("decided_by")
    decision = record.get("decision")
    stages = replay.get("stages")
    if not isinstance(stages, list) or not all(isinstance(s, Mapping) for s in stages):
        out.append("replay.stages: not a list of stages")
        return
    refused = [s.get("stage") for s in stages if s.get("result") in ("deny", "error")]
    _monitor_consistency(record, stages, out)
    if decided_by is None:
        if refused:
            out.append(f"replay.decided_by: null, but stage {refused[0]!r} refused")
        if decision != "allow":
            out.append(f"decision: recorded {decision!r}, but no stage refused the call")
    else:
        if not refused or refused[-1] != decided_by:
            out.append(f"replay.decided_by: {decided_by!r} is not the stage that refused")
        if decided_by in POLICY_STAGES and decided_by != "budget" and decision == "allow":
            out.append(f"decision: recorded 'allow', but stage {decided_by!r} refused")


def _monitor_consistency(
    record: Mapping[str, Any], stages: Sequence[Mapping[str, Any]], out: list[str]
) -> None:
    """A monitor-mode record's ``would_refuse`` names the first stage that would have
    refused (``would_deny`` in the stages); a record not in monitor mode has neither."""
    would = [s for s in stages if s.get("result") == "would_deny"]
    noted = record.get("would_refuse")
    if not would and noted is None:
        return
    if record.get("enforcement") != "monitor":
        out.append("would_refuse: set, but the record is not in monitor mode")
        return
    first = would[0] if would else {}
    if not isinstance(noted, Mapping) or (noted.get("stage"), noted.get("code")) != (
        first.get("stage"),
        first.get("code"),
    ):
        out.append(f"would_refuse: recorded {noted!r}, but the first would_deny stage is {first!r}")


def _replay_budget(
    record: Mapping[str, Any], replay: Mapping[str, Any], store: PolicyStore, out: list[str]
) -> dict[str, Any]:
    """Step the policy's engine on the recorded inputs; append mismatches to ``out``."""
    budget = replay.get("budget")
    if not isinstance(budget, Mapping):
        raise ExplainError("no_budget_inputs", "replay.budget: missing")
    digest = str(replay.get("policy"))
    engine = store.engine(digest)
    if engine is None:
        raise ExplainError(
            "policy_not_found",
            f"policy sha256 {digest} is not among the given policies "
            f"({', '.join(d[:12] for d in store.digests) or 'none'}): "
            "pass the policy file the sidecar ran with (--policy FILE)",
        )
    if replay.get("engine") != "builtin":
        raise ExplainError(
            "engine_not_replayable",
            f"engine {replay.get('engine')!r}: only the builtin engine is replayed",
        )
    recorded_prices = replay.get("prices")
    if recorded_prices is not None and recorded_prices != engine.prices.version:
        raise ExplainError(
            "price_table_mismatch",
            f"the decision used price table {recorded_prices!r}, this is "
            f"{engine.prices.version!r} (pass it with --prices FILE)",
        )
    try:
        event = event_from_dict(dict(budget["event"]))
        if not isinstance(event, Reserve):
            raise TypeError("not a reserve event")
        state = rebuild(budget["before"], event)
    except (KeyError, TypeError, ValueError, SnapshotError) as e:
        out.append(f"replay.budget: unreadable inputs: {e}")
        return {}
    # The record's own identity must be the event's.
    # (The request digest is not compared: an MCP message's is its own, not the body's.)
    for field, value in (("decision_id", event.call_id), ("time", event.ts)):
        if record.get(field) != value:
            out.append(f"{field}: recorded {record.get(field)!r}, engine event has {value!r}")
    before = engine.budget_report(state, max(event.ts, state.clock))
    _, decision = engine.step(state, event)
    replayed = decision_doc(decision)
    recorded = budget.get("decision")
    if (
        isinstance(recorded, Mapping)
        and recorded.get("code") == codes.STATE_PERSIST_FAILED
        and replayed["allowed"]
    ):
        # The engine allowed it; the sidecar refused because the new state could not be
        # written (fail closed). Everything but the verdict must still agree.
        replayed = {
            **replayed,
            **{k: recorded.get(k) for k in ("allowed", "code", "failure_type", "message_sha256")},
        }
    _diff(recorded, replayed, "budget.decision", out)
    if replay.get("decided_by") == "budget":
        if record.get("code") != replayed["code"]:
            out.append(f"code: recorded {record.get('code')!r}, replayed {replayed['code']!r}")
        if record.get("decision") == "allow":
            out.append("decision: recorded 'allow', replayed a refusal")
    elif not replayed["allowed"] and not _would_refuse(record, "budget", replayed["code"]):
        out.append("decision: the engine refuses the call, the record says it went on")
    return {
        "before": before,
        "worst_case": _worst_case(engine, event, before),
        "event": event.to_dict(),
        "decision": replayed,
        "message": decision.message,
    }


def _would_refuse(record: Mapping[str, Any], stage: str, code: Any) -> bool:
    """Whether a monitor-mode record says ``stage`` would have refused with ``code`` (the
    call went on: ``spec.enforcement: monitor``)."""
    would = record.get("would_refuse")
    if record.get("enforcement") != "monitor" or not isinstance(would, Mapping):
        return False
    also = would.get("also")
    if not isinstance(also, list):
        also = []
    return any(
        isinstance(w, Mapping) and w.get("stage") == stage and w.get("code") == code
        for w in [would, *also]
    )


def _worst_case(engine: Engine, event: Reserve, dims: Mapping[str, Any]) -> dict[str, float]:
    """What the call asked to reserve, per metered dimension of ``dims`` (for reading;
    the decision itself is the engine's)."""
    need: dict[str, float] = {
        "calls": 1.0,
        "tokens": float(event.max_input_tokens + event.max_output_tokens),
        "input_tokens": float(event.max_input_tokens),
        "output_tokens": float(event.max_output_tokens),
        "risk_score": float(event.risk),
    }
    model = event.model if event.model is not None or event.kind != "llm" else ""
    if model is not None:
        price = engine.prices.lookup(model)
        if price is not None:
            need["cost_usd"] = (
                event.max_input_tokens * price.worst_input
                + event.max_output_tokens * price.worst_output
            ) / PICO_PER_USD
    return {name: value for name, value in need.items() if name in dims}


def rederive(record: Mapping[str, Any], store: PolicyStore) -> dict[str, Any]:
    """Re-derive one record's decision: ``{"replayed", "match", "mismatches", "note"}``."""
    replay = record.get("replay")
    mismatches: list[str] = []
    if not isinstance(replay, Mapping):
        return {
            "replayed": None,
            "match": False,
            "mismatches": ["replay: the record carries no replay inputs"],
            "note": None,
        }
    if replay.get("v") != REPLAY_FORMAT:
        return {
            "replayed": None,
            "match": False,
            "mismatches": [f"replay.v: unsupported format {replay.get('v')!r}"],
            "note": None,
        }
    _consistency(record, replay, mismatches)
    note = None
    replayed: dict[str, Any] | None = None
    if isinstance(replay.get("budget"), Mapping):
        replayed = _replay_budget(record, replay, store, mismatches)
    elif replay.get("budget") == "intent":
        note = "the budget's decision is re-derived from the intent record"
    else:
        decided_by = replay.get("decided_by")
        note = (
            f"refused at stage {decided_by!r}, which reads the request itself (not kept "
            "in the record): checked for consistency, not re-run"
            if decided_by is not None
            else "the call never reached the budget stage"
        )
    return {"replayed": replayed, "match": not mismatches, "mismatches": mismatches, "note": note}


def _pick(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The record that states the decision: the outcome of a refusal, else the intent."""
    with_inputs = [r for r in records if isinstance(r.get("replay"), Mapping)]
    pool = with_inputs or list(records)
    for phase in ("intent", "outcome"):
        for r in pool:
            if r.get("phase") == phase and (phase == "outcome" or r.get("decision") == "allow"):
                return r
    return pool[-1]


def explain(records: Sequence[Mapping[str, Any]], store: PolicyStore) -> dict[str, Any]:
    """The explain document of one decision from its records (intent and/or outcome).

    Every record with replay inputs is re-derived; ``match`` is true only when all agree.
    Raises :class:`ExplainError` when there is no record, or the inputs cannot be replayed
    (policy not given, other engine, other price table)."""
    if not records:
        raise ExplainError("decision_not_found", "no audit record for this decision")
    if not any(r.get("phase") in ("intent", "outcome") for r in records):
        raise ExplainError(
            "not_replayable",
            "only connection records (a tunnel the sidecar "
            "did not inspect): no request decision to explain",
        )
    main = _pick(records)
    replay = main.get("replay") if isinstance(main.get("replay"), Mapping) else {}
    assert isinstance(replay, Mapping)
    results = [(r, rederive(r, store)) for r in records if r.get("phase") in ("intent", "outcome")]
    mismatches = [
        f"{r.get('phase')} #{r.get('seq')}: {m}" for r, res in results for m in res["mismatches"]
    ]
    mine = next((res for r, res in results if r is main), None)
    budget = replay.get("budget") if isinstance(replay.get("budget"), Mapping) else None
    return {
        "decision_id": main.get("decision_id"),
        "decision": {
            "decision": main.get("decision"),
            "code": main.get("code"),
            "failure_type": main.get("failure_type"),
            "message": main.get("message"),
            "time": main.get("time"),
            "run_id": main.get("run_id"),
            "agent": f"{main.get('namespace')}/{main.get('workload')}",
            "kind": main.get("kind"),
            "enforcement": main.get("enforcement") or "enforce",
            # The outcome's (a stage after the intent, the answer's guardrails, may add one).
            "would_refuse": next(
                (r["would_refuse"] for r in reversed(records) if r.get("would_refuse")), None
            ),
            "target": main.get("target"),
            "tool": main.get("tool"),
            "model": main.get("model"),
            "status": next((r.get("status") for r in records if r.get("phase") == "outcome"), None),
            "findings": [
                {k: f.get(k) for k in ("detector", "type", "action", "direction") if k in f}
                for f in main.get("findings") or ()
                if isinstance(f, Mapping)
            ],
        },
        "policy": replay.get("policy"),
        "stages": list(replay.get("stages") or []),
        "decided_by": replay.get("decided_by"),
        "recorded": None if budget is None else budget.get("decision"),
        "replayed": None if mine is None else mine["replayed"],
        "note": None if mine is None else mine["note"],
        "match": bool(results) and not mismatches,
        "mismatches": mismatches or ([] if results else ["no intent or outcome record"]),
        "records": [
            {
                "phase": r.get("phase"),
                "seq": r.get("seq"),
                "chain_id": r.get("chain_id"),
                "match": res["match"],
            }
            for r, res in results
        ],
    }


def _fmt(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def render_text(doc: Mapping[str, Any]) -> str:
    """The explain document for a terminal."""
    d = doc["decision"]
    lines = [
        f"decision {doc['decision_id']}: {str(d['decision']).upper()}"
        + (f" ({d['code']})" if d.get("code") else ""),
        f"  agent {d['agent']}  run {d['run_id']}  kind {d['kind']}  {d['target']}",
        f"  policy sha256 {doc.get('policy')}",
    ]
    would = d.get("would_refuse")
    if d.get("enforcement") == "monitor":
        lines.append(
            "  enforcement: monitor (nothing refused; the call went on)"
            if not isinstance(would, Mapping)
            else f"  enforcement: monitor: WOULD REFUSE at {would.get('stage')} "
            f"({would.get('code')}, {would.get('failure_type')}); the call went on"
        )
    lines.append("stages:")
    for stage in doc["stages"]:
        extra = "".join(f" {k}={v}" for k, v in stage.items() if k not in ("stage", "result"))
        mark = " <- decided" if stage.get("stage") == doc.get("decided_by") else ""
        lines.append(f"  {stage.get('stage'):<12} {stage.get('result')}{extra}{mark}")
    for f in d.get("findings") or ():
        lines.append(f"  finding: {f.get('detector')} {f.get('type')} action={f.get('action')}")
    if d.get("message"):
        lines.append(f"  message: {d['message']}")
    replayed = doc.get("replayed")
    if replayed:
        lines.append(
            "budget before the call (used / reserved / limit), this call's worst case, after:"
        )
        after = replayed["decision"]["budget"]
        need = replayed.get("worst_case") or {}
        for name, b in replayed["before"].items():
            a = after.get(name, b)
            ask = f"+{_fmt(need[name])}" if name in need else "-"
            lines.append(
                f"  {name:<22} {_fmt(b['used'])} / {_fmt(b['reserved'])} / "
                f"{_fmt(b['limit'])}   {ask:>10}   ->  {_fmt(a['used'])} / "
                f"{_fmt(a['reserved'])}"
            )
        ev = replayed["event"]
        lines.append(
            f"  event: reserve kind={ev['kind']} model={ev['model']} tool={ev['tool']} "
            f"max_in={ev['max_input_tokens']} max_out={ev['max_output_tokens']} "
            f"risk={ev['risk']}"
        )
        r = replayed["decision"]
        lines.append(
            "replayed: "
            + ("ALLOW" if r["allowed"] else f"DENY ({r['code']}): {replayed['message']}")
        )
    if doc.get("note"):
        lines.append(f"note: {doc['note']}")
    if doc["match"]:
        lines.append(
            "match: yes (the recorded decision is re-derived exactly)"
            if replayed
            else "match: yes (the record is consistent; no engine step to re-run)"
        )
    else:
        lines.append("match: NO")
        lines.extend(f"  {m}" for m in doc["mismatches"])
    return "\n".join(lines)
