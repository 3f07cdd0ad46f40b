"""What injection knows of a namespace's GovernancePolicies, and what it decides for a pod:
skip it, refuse it, or admit it with haltgate's pieces added."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from haltgate.operator import refusals


@dataclass(frozen=True, slots=True)
class PolicyRef:
    """What injection needs to know about one GovernancePolicy of the pod's namespace."""

    name: str
    generation: int
    selector: Mapping[str, Any] = field(default_factory=dict)
    uses_opa: bool = False
    pool: str | None = None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> PolicyRef:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        return cls(
            name=str(meta.get("name", "")),
            generation=int(meta.get("generation") or 0),
            selector=spec.get("selector") or {},
            uses_opa=spec.get("opa") is not None,
            pool=spec.get("pool") or None,
        )


# ----------------------------------------------------------------------------- outcomes
@dataclass(frozen=True, slots=True)
class Skip:
    """Admit the pod unchanged."""

    reason: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Refuse:
    """Refuse the pod: it opted in but cannot be governed as asked."""

    code: str
    path: str
    reason: str
    more: tuple[refusals.Refusal, ...] = ()
    """Further reasons, so one round trip shows the user everything to fix."""

    @property
    def message(self) -> str:
        parts = [f"{self.path}: {self.reason}"]
        parts += [f"{r.path}: {r.reason} ({r.code})" for r in self.more]
        return f"haltgate: pod refused ({self.code}): " + "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Inject:
    """Admit the pod as ``pod`` (the input with haltgate's pieces added)."""

    pod: dict[str, Any]
    record: dict[str, Any]
    warnings: tuple[str, ...] = ()


Outcome = Skip | Refuse | Inject
