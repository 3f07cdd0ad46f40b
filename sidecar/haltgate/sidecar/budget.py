"""The budget stage: the pipeline's narrow view of the Governor (budget engine + state).

Keeps the pipeline independent of the engine's event classes: the pipeline asks
``reserve``/``settle``/``release`` with plain values and gets a :class:`BudgetVerdict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from haltgate.governance.engine.events import Release, Reserve, Settle
from haltgate.governance.policy_base import FailureType

__all__ = ["NO_BUDGET", "Budget", "BudgetVerdict"]

NO_BUDGET: Mapping[str, Mapping[str, float]] = MappingProxyType({})
"""The budget of a verdict that has none (no engine wired): compare with ``is``."""


@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    allowed: bool
    failure_type: FailureType | None = None
    code: str | None = None
    message: str = ""
    warnings: tuple[str, ...] = ()
    budget: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: NO_BUDGET)
    """Per dimension ``{"used", "reserved", "limit"}``; from the engine, a lazy report that
    is built only when read."""
    retry_after: float | None = None
    halted: bool = False
    inputs: tuple[Any, Any, Any] | None = None
    """For a reservation: ``(engine, state before, Reserve event)``, what the audit record
    keeps to re-derive the decision (``replayinputs.py``); references only, serialised when
    the record is built."""


_ALLOW = BudgetVerdict(True)


def _verdict(decision: Any, inputs: tuple[Any, Any, Any] | None = None) -> BudgetVerdict:
    if decision.allowed and not decision.warnings:
        return BudgetVerdict(True, budget=decision.budget, inputs=inputs)
    return BudgetVerdict(
        allowed=decision.allowed,
        failure_type=decision.failure_type,
        code=decision.code,
        message=decision.message,
        warnings=tuple(decision.warnings),
        budget=decision.budget,
        retry_after=getattr(decision, "retry_after", None),
        halted=getattr(decision, "halted", False),
        inputs=inputs,
    )


class Budget:
    """Budget reservation and settlement through the Governor.

    ``governor`` is a ``haltgate.governance.governor.Governor``; ``None`` (no budget
    engine wired, e.g. unit tests of other stages) allows everything.
    """

    def __init__(self, governor: Any | None) -> None:
        self.governor = governor

    def halted(self, ts: float) -> BudgetVerdict:
        """Whether the run is halted (terminal until an operator reset)."""
        governor = self.governor
        if governor is None or not governor.halted:
            return _ALLOW
        # Rare path (every call is refused): the snapshot is the Governor's stable report.
        snapshot = governor.snapshot(ts)
        halt = snapshot.get("halt") or {}
        failure = halt.get("failure_type")
        return BudgetVerdict(
            False,
            failure_type=FailureType(failure) if failure else FailureType.EXTERNAL,
            code=halt.get("code") or "halted",
            message=halt.get("message") or "the run is halted",
            budget=snapshot.get("budget") or NO_BUDGET,
            halted=True,
        )

    def max_output_tokens(self, model: str | None) -> int | None:
        """The model's largest completion per the price table (``None``: not known).

        The worst case reserved for an LLM call that names no output cap: the provider may
        generate up to this many tokens, so anything less would under-reserve."""
        if self.governor is None or model is None:
            return None
        return self.governor.engine.prices.max_output_tokens(model)

    def context_window(self, model: str | None) -> int | None:
        """The model's largest prompt per the price table (``None``: not known)."""
        if self.governor is None or model is None:
            return None
        return self.governor.engine.prices.context_window(model)

    def model_bounds(self, model: str | None) -> tuple[int | None, int | None]:
        """``(max_output_tokens(model), context_window(model))`` from one price lookup
        (both are read for every LLM call's reservation)."""
        if self.governor is None or model is None:
            return None, None
        price = self.governor.engine.prices.lookup(model)
        if price is None:
            return None, None
        return price.max_output_tokens, price.context_window

    @property
    def meters(self) -> bool:
        """Whether a budget engine is wired (reservations matter)."""
        return self.governor is not None

    def reserve(
        self,
        *,
        call_id: str,
        ts: float,
        kind: str,
        host: str,
        tool: str | None,
        model: str | None,
        max_input_tokens: int,
        max_output_tokens: int,
        fingerprint: str,
        risk: float,
    ) -> BudgetVerdict:
        governor = self.governor
        if governor is None:
            return _ALLOW
        event = Reserve(
            call_id,
            ts,
            kind,
            host,
            tool,
            model,
            max_input_tokens,
            max_output_tokens,
            fingerprint,
            risk,
        )
        decision, engine, before = governor.reserve_event(event)
        return _verdict(decision, (engine, before, event))

    def reserve_all(self, reservations: list[dict[str, Any]]) -> BudgetVerdict:
        """Reserve several calls all or nothing, in one step (``reserve`` keyword
        arguments each): the refusal of the first that does not fit, none kept then."""
        if self.governor is None:
            return _ALLOW
        events = [Reserve(**r) for r in reservations]
        return _verdict(self.governor.apply_all(events, all_or_nothing=True))

    def settle_all(self, settlements: list[dict[str, Any]]) -> BudgetVerdict:
        """Settle several calls in one step (``settle`` keyword arguments each)."""
        if self.governor is None:
            return _ALLOW
        events = [Settle(**x) for x in settlements]
        return _verdict(self.governor.apply_all(events))

    def release_all(self, call_ids: list[str], ts: float) -> None:
        """Give several reservations back in one step."""
        if self.governor is not None and call_ids:
            self.governor.apply_all([Release(c, ts) for c in call_ids])

    def settle(
        self,
        *,
        call_id: str,
        ts: float,
        usage: Any | None,
        ok: bool,
        error_fingerprint: str | None = None,
        result_fingerprint: str | None = None,
    ) -> BudgetVerdict:
        if self.governor is None:
            return _ALLOW
        return _verdict(
            self.governor.settle(
                call_id,
                ts,
                usage,
                ok,
                error_fingerprint=error_fingerprint,
                result_fingerprint=result_fingerprint,
            )
        )

    def release(self, call_id: str, ts: float) -> None:
        if self.governor is not None:
            self.governor.release(call_id, ts)

    def add_risk(self, ts: float, risk: float, code: str) -> None:
        if self.governor is not None and risk > 0:
            self.governor.add_risk(ts, risk, code)
