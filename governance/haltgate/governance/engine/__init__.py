"""haltgate's budget engine: a pure, deterministic state machine.

``Engine(spec, prices).step(state, event) -> (state, decision)``: no clock, no I/O, no
randomness. The sidecar uses it through :class:`haltgate.governance.governor.Governor`,
which holds and persists the state. See ``docs/budgets.md``.
"""

from haltgate.governance.engine import codes
from haltgate.governance.engine.config import MeterSpec
from haltgate.governance.engine.core import Engine
from haltgate.governance.engine.decision import Decision, LazyBudget
from haltgate.governance.engine.events import (
    Abandon,
    AddRisk,
    Event,
    Halt,
    Lift,
    Release,
    Reserve,
    Reset,
    Settle,
    Usage,
    event_from_dict,
)
from haltgate.governance.engine.pricing import Price, PriceTable, load_shipped
from haltgate.governance.engine.state import EngineState, HaltInfo, MeterState, Reservation

__all__ = [
    "Abandon",
    "AddRisk",
    "Decision",
    "Engine",
    "EngineState",
    "Event",
    "Halt",
    "HaltInfo",
    "LazyBudget",
    "Lift",
    "MeterSpec",
    "MeterState",
    "Price",
    "PriceTable",
    "Release",
    "Reservation",
    "Reserve",
    "Reset",
    "Settle",
    "Usage",
    "codes",
    "event_from_dict",
    "load_shipped",
]
