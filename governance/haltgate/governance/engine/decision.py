"""The engine's answer to one event."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any, NamedTuple

import orjson

from haltgate.governance.policy_base import FailureType

BudgetReport = Mapping[str, Mapping[str, float]]
"""Per dimension: ``{"used": .., "reserved": .., "limit": ..}`` in the dimension's unit."""


class LazyBudget(tuple):
    """A budget report computed on first read: a read-only mapping equal to the plain dict.

    Most decisions on the hot path are allowed and their budget is read at most once (for
    the audit record), so building a dozen small dicts eagerly on every step would be the
    engine's largest cost. Built as ``LazyBudget((build, *args))``: a tuple holding the
    builder and its arguments (a tuple is the cheapest object CPython creates; this runs on
    every step); the report ``build(*args)`` is computed on first access and kept. It is
    registered as a ``Mapping``; the tuple underneath is an implementation detail.
    """

    def _get(self) -> dict[str, dict[str, float]]:
        try:
            return self.__dict__["value"]
        except KeyError:
            build = tuple.__getitem__(self, 0)
            value = build(*tuple.__getitem__(self, slice(1, None)))
            self.__dict__["value"] = value
            return value

    def __getitem__(self, key: str) -> Mapping[str, float]:  # type: ignore[override]
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __contains__(self, key: object) -> bool:
        return key in self._get()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._get() == dict(other.items())
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._get())

    def keys(self) -> KeysView[str]:
        """The dimensions."""
        return self._get().keys()

    def items(self) -> ItemsView[str, dict[str, float]]:
        """(dimension, report) pairs."""
        return self._get().items()

    def values(self) -> ValuesView[dict[str, float]]:
        """The reports."""
        return self._get().values()

    def get(self, key: str, default: Any = None) -> Any:
        """The report of a dimension, or ``default``."""
        return self._get().get(key, default)

    def __reduce__(self) -> tuple[Any, ...]:
        # copy/pickle as the plain dict it stands for
        return (dict, (self._get(),))


Mapping.register(LazyBudget)


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
