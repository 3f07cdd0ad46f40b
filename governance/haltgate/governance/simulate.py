"""Re-run recorded traffic through a new policy (``haltgate policy simulate``).

Each agent run (audit chain) is replayed in chain order through the new policy's budget
engine, starting from the engine's view recorded before the run's first budget decision:
every call's recorded ``Reserve`` event is stepped again (the new policy may now refuse it),
and a call the new policy still lets through is settled with the usage its outcome record
reports, so a stricter budget refuses exactly the calls it would have refused, with the
spend of the calls it refused taken out of what follows.

The stages before the budget (tool rules, guardrails, OPA, pool, upstreams) read the
request itself, which the record does not keep. When the new policy leaves those sections
as the recorded policy had them, their recorded outcome stands; when it changes one, the
decisions that depend on it are reported as *undecidable* with the reason, never guessed.
The same holds for a call the new policy would let through that the recorded one refused
before it reached the budget (its worst case was never recorded).

Traffic recorded in monitor mode (``spec.enforcement: monitor``) went on whatever the
controls said, so its recorded outcome is "allow": a call a control would have refused
(``would_refuse``) is a change to "deny" when the new policy keeps that control, which is
what switching from monitor to enforce changes (docs/rollout.md). The new policy's own
``enforcement`` is not simulated: the report says what its controls decide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from haltgate.governance.audit.explain import POLICY_STAGES
from haltgate.governance.audit.policies import LoadedPolicy, PolicyStore
from haltgate.governance.engine.core import Engine
from haltgate.governance.engine.events import Release, Reserve, Settle, Usage, event_from_dict
from haltgate.governance.engine.pricing import PriceTable, ShippedTable
from haltgate.governance.engine.snapshot import SnapshotError, rebuild
from haltgate.governance.engine.state import EngineState

__all__ = ["PRE_BUDGET_SECTIONS", "SimulationReport", "simulate"]

PRE_BUDGET_SECTIONS = ("upstreams", "tools", "mcp", "guardrails", "opa", "pool", "limits")
"""Policy sections the stages before the budget read; a change there is undecidable."""


@dataclass(slots=True)
class SimulationReport:
    """What the new policy would have decided differently."""

    decisions: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)
    undecidable: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    """Records without replay inputs (written before they existed) or of other kinds."""

    def groups(self) -> list[dict[str, Any]]:
        """Changes counted by (rule, agent, direction), largest first."""
        counts: dict[tuple[str, str, str], int] = {}
        for c in self.changes:
            key = (c["rule"], c["agent"], f"{c['recorded']} -> {c['simulated']}")
            counts[key] = counts.get(key, 0) + 1
        return [
            {"rule": r, "agent": a, "change": d, "count": n}
            for (r, a, d), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def as_dict(self, examples: int) -> dict[str, Any]:
        """JSON document: ``changed``, ``undecidable``, groups and the first examples."""
        return {
            "decisions": self.decisions,
            "changed": len(self.changes),
            "undecidable": len(self.undecidable),
            "skipped": self.skipped,
            "groups": self.groups(),
            "changes": self.changes[:examples],
            "undecidable_decisions": self.undecidable[:examples],
        }


def _changed_sections(old: LoadedPolicy | None, new: LoadedPolicy) -> list[str]:
    if old is None:
        return ["<policy not given>"]
    before = old.spec.model_dump(mode="json")
    after = new.spec.model_dump(mode="json")
    return [name for name in PRE_BUDGET_SECTIONS if before.get(name) != after.get(name)]


def _usage(doc: Any) -> Usage | None:
    if not isinstance(doc, Mapping):
        return None
    known = {
        k: doc[k]
        for k in (
            "input_tokens",
            "output_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "estimated",
            "model",
        )
        if k in doc
    }
    return Usage(**known)


def _monitored_refusal(rec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The refusal a monitor-mode record notes (``would_refuse``), or ``None``."""
    would = rec.get("would_refuse")
    if rec.get("enforcement") != "monitor" or not isinstance(would, Mapping):
        return None
    return would


def _agent(rec: Mapping[str, Any]) -> str:
    return f"{rec.get('namespace')}/{rec.get('workload')}"


def _verdict(allowed: bool, code: str | None) -> str:
    return "allow" if allowed else f"deny ({code})" if code else "deny"


class _RunSimulation:
    """One chain through the new engine."""

    def __init__(
        self, engine: Engine, store: PolicyStore, new: LoadedPolicy, report: SimulationReport
    ) -> None:
        self.engine = engine
        self.store = store
        self.new = new
        self.report = report
        self.state: EngineState | None = None
        self.reserved: dict[str, bool] = {}
        """Decision id -> whether the new policy let it through (its Reserve stepped)."""
        self.halted_by_new = False

    def _base(
        self, rec: Mapping[str, Any], replay: Mapping[str, Any], decided_by: Any, recorded: str
    ) -> dict[str, Any]:
        return {
            "decision_id": rec.get("decision_id"),
            "agent": _agent(rec),
            "run_id": rec.get("run_id"),
            "time": rec.get("time"),
            "kind": rec.get("kind"),
            "target": rec.get("target"),
            "tool": rec.get("tool"),
            "recorded": recorded,
            "recorded_by": decided_by,
        }

    def record(self, rec: Mapping[str, Any]) -> None:
        replay = rec.get("replay")
        if not isinstance(replay, Mapping) or rec.get("phase") not in ("intent", "outcome"):
            self.report.skipped += 1
            return
        decision_id = str(rec.get("decision_id"))
        budget = replay.get("budget")
        if decision_id in self.reserved:
            if rec.get("phase") == "outcome":
                self._settle(rec, decision_id)
            return
        decided_by = replay.get("decided_by")
        changed = _changed_sections(self.store.get(str(replay.get("policy"))), self.new)
        self.report.decisions += 1
        recorded = (
            "allow"
            if decided_by is None or decided_by not in POLICY_STAGES
            else _verdict(False, rec.get("code"))
        )
        base = self._base(rec, replay, decided_by, recorded)
        if changed and decided_by not in ("request",):
            self.report.undecidable.append(
                {
                    **base,
                    "reason": (
                        f"the new policy changes {', '.join('spec.' + c for c in changed)}, which "
                        "the stages before the budget read from the request; the record does not "
                        "keep the request"
                    ),
                }
            )
            if isinstance(budget, Mapping):
                self._reserve(rec, decision_id, budget, base, quiet=True)
                self._ended(rec, decision_id)
            return
        would = _monitored_refusal(rec)
        if would is not None and would.get("stage") not in ("budget", "halted"):
            # Recorded in monitor mode: a stage before the budget (or the answer's
            # guardrails) would have refused it, and the policy did not change that stage.
            self.reserved[decision_id] = False  # refused: no spend, its outcome is skipped
            self.report.changes.append(
                {
                    **base,
                    "simulated": _verdict(False, would.get("code")),
                    "rule": str(would.get("code") or would.get("stage")),
                    "message": f"stage {would.get('stage')} refused it when it ran in monitor "
                    "mode (would_refuse)",
                }
            )
            return
        if not isinstance(budget, Mapping):
            if decided_by == "halted" and self.state is not None and self.state.halt is None:
                self.report.undecidable.append(
                    {
                        **base,
                        "reason": (
                            "refused because the run was halted; under the new policy it is not "
                            "halted here, and the call's worst case was never recorded"
                        ),
                    }
                )
            return  # refused before the budget by an unchanged stage: unchanged
        self._reserve(rec, decision_id, budget, base, quiet=False)
        self._ended(rec, decision_id)

    def _ended(self, rec: Mapping[str, Any], decision_id: str) -> None:
        """An outcome without an intent before it (a refusal) is the call's last record:
        a reservation the new policy made for it ends here, unspent (the call never ran,
        or, refused at the budget when it ran, its spend is unknown)."""
        if rec.get("phase") == "outcome" and decision_id in self.reserved:
            if self.reserved[decision_id]:
                self._release(decision_id, rec)
            else:
                self.reserved.pop(decision_id)

    def _reserve(
        self,
        rec: Mapping[str, Any],
        decision_id: str,
        budget: Mapping[str, Any],
        base: dict[str, Any],
        *,
        quiet: bool,
    ) -> None:
        try:
            event = event_from_dict(dict(budget["event"]))
            if not isinstance(event, Reserve):
                raise TypeError("not a reserve event")
            if self.state is None:
                self.state = rebuild(budget["before"], event)
        except (KeyError, TypeError, ValueError, SnapshotError) as e:
            self.report.undecidable.append({**base, "reason": f"unreadable inputs: {e}"})
            return
        self.state, decision = self.engine.step(self.state, event)
        self.reserved[decision_id] = decision.allowed
        if quiet:
            return
        old = budget.get("decision")
        old_allowed = bool(old.get("allowed")) if isinstance(old, Mapping) else True
        if rec.get("enforcement") == "monitor":
            old_allowed = True  # monitor mode: the call went on whatever the budget said
        if decision.allowed != old_allowed:
            rule = (
                decision.code
                if not decision.allowed
                else (old.get("code") if isinstance(old, Mapping) else None)
            ) or "budget"
            self.report.changes.append(
                {
                    **base,
                    "simulated": _verdict(decision.allowed, decision.code),
                    "rule": rule,
                    "message": decision.message,
                    **(
                        {
                            "note": "allowed now, but the call was refused when it ran: its spend "
                            "is unknown and counted as nothing"
                        }
                        if decision.allowed
                        else {}
                    ),
                }
            )

    def _settle(self, rec: Mapping[str, Any], decision_id: str) -> None:
        allowed = self.reserved.pop(decision_id)
        if not allowed or self.state is None:
            return
        replay = rec.get("replay")
        decided_by = replay.get("decided_by") if isinstance(replay, Mapping) else None
        if decided_by in ("audit",):
            self._release(decision_id, rec)
            return
        status = rec.get("status")
        ts = float(rec.get("time") or 0.0) + float(rec.get("latency_ms") or 0.0) / 1000
        ok = rec.get("decision") == "allow" and not (isinstance(status, int) and status >= 500)
        self.state, _ = self.engine.step(
            self.state,
            Settle(
                decision_id,
                ts,
                _usage(rec.get("usage")),
                ok,
                None if ok else str(rec.get("code") or f"http_{status}"),
                None,
            ),
        )

    def _release(self, decision_id: str, rec: Mapping[str, Any]) -> None:
        self.reserved.pop(decision_id, None)
        if self.state is not None:
            self.state, _ = self.engine.step(
                self.state, Release(decision_id, float(rec.get("time") or 0.0))
            )


def simulate(
    records: Sequence[Mapping[str, Any]],
    new: LoadedPolicy,
    store: PolicyStore,
    prices: ShippedTable | None = None,
) -> SimulationReport:
    """Replay ``records`` (any number of runs, each in chain order) through ``new``.

    ``store`` holds the policies the records were decided with (by digest): without the
    recorded policy, the stages before the budget cannot be known unchanged and every
    decision is undecidable."""
    engine = Engine(new.spec, PriceTable.for_policy(new.spec.pricing, prices))
    report = SimulationReport()
    runs: dict[str, _RunSimulation] = {}
    for rec in records:
        chain = str(rec.get("chain_id"))
        sim = runs.get(chain)
        if sim is None:
            sim = runs[chain] = _RunSimulation(engine, store, new, report)
        sim.record(rec)
    return report
