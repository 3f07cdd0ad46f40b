"""The engine's answer to one event."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import orjson

from haltgate.governance.policy import FailureType

BudgetReport = Mapping[str, Mapping[str, float]]
"""Per dimension: ``{"used": .., "reserved": .., "limit": ..}`` in the dimension's unit."""


class LazyBudget(Mapping[str, Mapping[str, float]]):
    """A budget report computed on first read.

    Most decisions on the hot path are allowed and their budget is read at most once (for
    the audit record), so building a dozen small dicts eagerly on every step would be the
    engine's largest cost. Behaves as a read-only mapping equal to the plain dict.
    """

    __slots__ = ("_args", "_build", "_value")

    def __init__(self, build: Callable[..., dict[str, dict[str, float]]], *args: Any) -> None:
        # build(*args) later; no closure is created on the hot path.
        self._build: Callable[..., dict[str, dict[str, float]]] | None = build
        self._args = args
        self._value: dict[str, dict[str, float]] | None = None

    def _get(self) -> dict[str, dict[str, float]]:
        if self._value is None:
            assert self._build is not None
            self._value = self._build(*self._args)
            self._build = None
            self._args = ()
        return self._value

    def __getitem__(self, key: str) -> Mapping[str, float]:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(self._get())


class Decision(NamedTuple):
    """Whether a call may go ahead (for ``Reserve``) or the run may go on (other events).

    For a ``Reserve``: ``allowed`` says whether to forward the call. For every other event:
    ``allowed`` is false exactly when the run is halted after the event (a ``Settle`` that
    used up a budget reports the halt right away, so the sidecar can alert).
    ``code`` is a stable snake_case reason (see ``engine.codes``); ``halted`` tells a
    terminal halt (refused until reset) from a refusal of this one call (e.g. its worst case
    does not fit, or an hourly budget is used up: ``retry_after`` seconds then says when the
    period frees budget).

    An immutable named tuple (the cheapest record CPython builds: one per step). Its truth
    value is refused on purpose: ``if decision:`` would always be true; read ``allowed``.
    """

    allowed: bool
    failure_type: FailureType | None
    code: str | None
    message: str
    warnings: tuple[str, ...]
    budget: BudgetReport
    halted: bool = False
    retry_after: float | None = None

    def __bool__(self) -> bool:
        raise TypeError("a Decision has no truth value: test decision.allowed")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the budget materialised)."""
        return {
            "allowed": self.allowed,
            "failure_type": None if self.failure_type is None else self.failure_type.value,
            "code": self.code,
            "message": self.message,
            "warnings": list(self.warnings),
            "budget": {name: dict(values) for name, values in self.budget.items()},
            "halted": self.halted,
            "retry_after": self.retry_after,
        }

    def to_json(self) -> str:
        """JSON text; ``Decision.from_json(d.to_json()) == d``."""
        return orjson.dumps(self.to_dict()).decode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Inverse of :meth:`to_dict`."""
        failure = data["failure_type"]
        return cls(
            allowed=data["allowed"],
            failure_type=None if failure is None else FailureType(failure),
            code=data["code"],
            message=data["message"],
            warnings=tuple(data["warnings"]),
            budget={name: dict(values) for name, values in data["budget"].items()},
            halted=data.get("halted", False),
            retry_after=data.get("retry_after"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Decision:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(orjson.loads(text))
