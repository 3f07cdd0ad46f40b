"""In-process governance: the sidecar's budget engine inside the agent's process.

**Bypassable.** This runs in the process it governs: the agent (or any library it loads)
can skip it, change it, or call the network directly. It is a convenience for development
and for places where no sidecar can run, never an enforcement boundary. The sidecar, which
sits on the agent's only way out, is. Every object here says so in its ``repr`` and logs a
warning once when created.

It uses the same policy file and the same engine (``Governor`` over the builtin engine or
the EmoCore adapter, as ``spec.engine`` says), so budgets, stagnation detection and typed
halts behave as behind the sidecar: the SDK's framework integrations (``local=`` of
``haltgate.sdk.langchain.HaltgateCallbackHandler`` and
``haltgate.sdk.autogen.HaltgateChatCompletionClient``, of the ``haltgate-sdk``
distribution) reserve a call's worst case before it is made and settle it with the usage
the framework reports. A refusal is a :class:`LocalRefusal` whose ``body`` is the sidecar's
JSON error object, so the SDK turns it into the same typed exception a sidecar refusal
gives. Tool rules, guardrails, OPA and audit are the sidecar's and are not applied here.

This lives in the main distribution (it needs the engine and the policy model); the SDK
does not import it.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from haltgate.governance.engine import Decision, Usage
from haltgate.governance.errors import DeniedError
from haltgate.governance.governor import Governor
from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.policy_base import FailureType
from haltgate.governance.traffic_signals import (
    CallSignals,
    SignalTracker,
    error_fingerprint,
    request_fingerprint,
    result_fingerprint,
)
from haltgate.governance.validation import load_policy_file

__all__ = ["BYPASSABLE_NOTICE", "LocalGovernance", "LocalRefusal"]

log = logging.getLogger("haltgate.governance.inprocess")

BYPASSABLE_NOTICE = (
    "haltgate in-process governance is bypassable (it runs inside the agent): use the "
    "sidecar to enforce"
)

_ids = itertools.count(1)


class LocalRefusal(DeniedError):
    """The in-process engine refused a call; ``body`` is the sidecar's error object for it
    (``{"error": {"type", "code", "message", "decision_id", "budget"}}``)."""

    def __init__(self, message: str, *, code: str, failure_type: FailureType,
                 decision_id: str, budget: dict[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__(message, code=code, failure_type=failure_type, budget=budget)
        self.decision_id = decision_id

    @property
    def body(self) -> dict[str, Any]:
        """The JSON error body a sidecar would have answered."""
        return {
            "error": {
                "type": self.type,
                "code": self.code,
                "message": self.message,
                "decision_id": self.decision_id,
                "budget": self.budget,
            }
        }


def error_from_decision(decision: Decision, decision_id: str) -> LocalRefusal:
    """The refusal for a refusing engine decision (the same one the sidecar would send)."""
    failure = decision.failure_type or FailureType.EXHAUSTION
    code = decision.code or "budget_denied"
    budget = {k: dict(v) for k, v in decision.budget.items()} if decision.budget else None
    return LocalRefusal(decision.message or code, code=code, failure_type=failure,
                        decision_id=decision_id, budget=budget)  # fmt: skip


def _usage(usage: Any) -> Usage | None:
    """An engine ``Usage`` from the SDK's ``TokenUsage`` (or anything with its fields)."""
    if usage is None or isinstance(usage, Usage):
        return usage
    return Usage(input_tokens=int(getattr(usage, "input_tokens", 0)),
                 output_tokens=int(getattr(usage, "output_tokens", 0)),
                 cached_input_tokens=int(getattr(usage, "cached_input_tokens", 0)),
                 reasoning_tokens=int(getattr(usage, "reasoning_tokens", 0)))  # fmt: skip


class LocalGovernance:
    """The budget engine of a policy, driven from framework callbacks (bypassable).

    ``policy``: a policy file path (``HALTGATE_POLICY_FILE`` when omitted) or a parsed
    spec. ``clock``: epoch seconds (injectable for tests). Not thread-safe across event
    loops: one instance per agent run.
    """

    bypassable = True

    def __init__(
        self,
        policy: str | os.PathLike[str] | GovernancePolicySpec | None = None,
        *,
        clock: Callable[[], float] = time.time,
        host: str = "in-process",
    ) -> None:
        if policy is None:
            policy = os.environ.get("HALTGATE_POLICY_FILE")
            if not policy:
                raise ValueError("no policy: pass one or set HALTGATE_POLICY_FILE")
        spec = policy if isinstance(policy, GovernancePolicySpec) else (
            load_policy_file(os.fspath(policy)).spec
        )  # fmt: skip
        self.spec = spec
        self.governor = Governor.for_policy(spec, now=clock())
        self.clock = clock
        self.host = host
        self.signals = SignalTracker()
        self.last_signals: CallSignals | None = None
        self.warnings: tuple[str, ...] = ()
        """Dimensions past ``warnAt`` after the last decision."""
        self._fingerprints: dict[str, tuple[str, str | None]] = {}
        log.warning(BYPASSABLE_NOTICE)

    def __repr__(self) -> str:
        return f"<LocalGovernance (BYPASSABLE, in-process) halted={self.governor.halted}>"

    def _check(self, decision: Decision, decision_id: str) -> None:
        self.warnings = tuple(decision.warnings)
        if not decision.allowed:
            raise error_from_decision(decision, decision_id)

    def reserve(
        self,
        *,
        kind: str,
        target: str,
        payload: Any,
        model: str | None = None,
        tool: str | None = None,
        max_input_tokens: int = 0,
        max_output_tokens: int = 0,
    ) -> str:
        """Reserve a call before it is made; returns its call id. Raises on refusal."""
        call_id = f"local-{os.getpid()}-{next(_ids)}"
        fingerprint = request_fingerprint(kind, target, payload)
        decision = self.governor.reserve(
            call_id, self.clock(), kind=kind, host=self.host, tool=tool, model=model,
            max_input_tokens=max_input_tokens, max_output_tokens=max_output_tokens,
            fingerprint=fingerprint,
        )  # fmt: skip
        self._check(decision, call_id)
        self._fingerprints[call_id] = (fingerprint, tool or model)
        return call_id

    def settle(
        self,
        call_id: str,
        *,
        ok: bool,
        usage: Any = None,
        result: Any = None,
        error: BaseException | str | None = None,
    ) -> None:
        """Settle a reserved call with what it used (``usage``: an engine ``Usage`` or
        the SDK's ``TokenUsage``).

        Never raises: the call has happened. A halt this settles into (a budget now used
        up, a stagnation window, EmoCore) refuses the next :meth:`reserve`.
        """
        fingerprint, target = self._fingerprints.pop(call_id, ("", None))
        result_fp = result_fingerprint(result) if ok and result is not None else None
        error_fp = error_fingerprint(error) if not ok and error is not None else None
        decision = self.governor.settle(call_id, self.clock(), _usage(usage), ok,
                                        error_fingerprint=error_fp,
                                        result_fingerprint=result_fp)  # fmt: skip
        self.last_signals = self.signals.observe(fingerprint, target=target, ok=ok,
                                                 result=result_fp)  # fmt: skip
        self.warnings = tuple(decision.warnings)

    def release(self, call_id: str) -> None:
        """Give a reservation back: the call was never made."""
        self._fingerprints.pop(call_id, None)
        self.governor.release(call_id, self.clock())

    def raise_if_halted(self) -> None:
        """Raise the run's halt, if it is halted."""
        halt = self.governor.engine.engine_state(self.governor.state).halt
        if halt is not None:
            raise LocalRefusal(
                halt.message,
                code=halt.code,
                failure_type=halt.failure_type,
                decision_id=f"local-{os.getpid()}-halt",
            )

    def budgets(self) -> dict[str, dict[str, float]]:
        """Per dimension used/reserved/limit (the admin API's ``budget``)."""
        return dict(self.governor.snapshot(self.clock())["budget"])
