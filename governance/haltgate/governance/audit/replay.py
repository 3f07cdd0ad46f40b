"""Replay a whole agent run through the engine (``haltgate audit replay RUN_ID``).

Every intent and outcome record of the run, in chain order, is re-derived from its own
inputs (:func:`haltgate.governance.audit.explain.rederive`). The first record whose
decision the engine does not re-derive exactly is the mismatch: an edited record, or an
engine that decides differently from the one that ran (a bug). Connection records (TLS
tunnels) decide nothing the engine does and are counted, not replayed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from haltgate.governance.audit.explain import ExplainError, rederive
from haltgate.governance.audit.policies import PolicyStore

__all__ = ["replay_run"]


def replay_run(records: Sequence[Mapping[str, Any]], store: PolicyStore) -> dict[str, Any]:
    """``{"records", "replayed", "skipped", "match", "first_mismatch"}`` for a run.

    ``first_mismatch`` (``None`` when all match) names the record (decision id, phase,
    chain, seq) and what differs. A record that cannot be replayed here (its policy not
    given, another engine) stops the replay with ``error`` (and ``match`` false): replay
    proves nothing it did not re-run."""
    replayed = skipped = 0
    budget_steps = 0

    def report(
        match: bool, first_mismatch: dict[str, Any] | None, error: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "records": len(records),
            "replayed": replayed,
            "skipped": skipped,
            "budget_steps": budget_steps,
            "match": match,
            "first_mismatch": first_mismatch,
        }
        if error is not None:
            doc["error"] = error
        return doc

    for record in records:
        if record.get("phase") not in ("intent", "outcome"):
            skipped += 1
            continue
        try:
            result = rederive(record, store)
        except ExplainError as e:
            # Not replayable here (policy not given, another engine or price table): no
            # verdict either way; the caller says so (exit 2).
            error = {
                "code": e.code,
                "message": e.message,
                "decision_id": record.get("decision_id"),
                "seq": record.get("seq"),
            }
            return report(False, None, error)
        replayed += 1
        if result["replayed"]:
            budget_steps += 1
        if not result["match"]:
            mismatch = {
                "decision_id": record.get("decision_id"),
                "phase": record.get("phase"),
                "chain_id": record.get("chain_id"),
                "seq": record.get("seq"),
                "mismatches": result["mismatches"],
            }
            return report(False, mismatch)
    if not replayed:
        error = {
            "code": "nothing_to_replay",
            "decision_id": None,
            "seq": None,
            "message": "the run has no intent or outcome record",
        }
        return report(False, None, error)
    return report(True, None)
