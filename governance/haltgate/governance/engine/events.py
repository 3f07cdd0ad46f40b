"""Events the engine steps on, and the token usage a call reports.

Every event carries ``ts``: epoch seconds (UTC) read by the *caller*. The engine never reads a
clock, so the same events always produce the same decisions (replay, tests, audit).
Each class has ``to_dict``/``from_dict`` for journals and replays; ``event_from_dict``
dispatches on the ``"event"`` key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypeAlias

from haltgate.governance.policy_base import FailureType


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one call, normalised across providers.

    Conventions (the usage parsers must produce exactly these):

    - ``input_tokens`` is *all* prompt tokens, **including** ``cached_input_tokens`` and
      ``cache_write_tokens`` (OpenAI's ``prompt_tokens`` convention). For Anthropic,
      ``input_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens``.
    - ``output_tokens`` is all generated tokens, **including** ``reasoning_tokens``
      (OpenAI's ``completion_tokens`` convention).
    - ``estimated`` is true when the numbers are the sidecar's estimate (a stream cut before
      its usage chunk), not the provider's report.
    - ``model`` is the model the provider reports (may be a dated snapshot name).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Reserve:
    """Before forwarding a call: reserve its worst case (1 call, max tokens, max cost, risk).

    ``max_input_tokens`` must be an upper bound of the prompt's tokens (the request body's
    byte length is one for text: a token is at least one byte); ``max_output_tokens`` the
    request's ``max_tokens`` or the model's maximum (``PriceTable.max_output_tokens``).
    ``fingerprint`` is a digest of the request identity: the same call gives the same value.
    ``tool`` is the MCP tool name (or an HTTP tool's name); None for LLM calls.
    """

    call_id: str
    ts: float
    kind: str
    host: str
    tool: str | None
    model: str | None
    max_input_tokens: int
    max_output_tokens: int
    fingerprint: str
    risk: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with an ``"event"`` tag."""
        return {"event": "reserve", **asdict(self)}


@dataclass(frozen=True, slots=True)
class Settle:
    """After the response: replace the reservation by the actual usage.

    ``ok`` is false for upstream failures (5xx, network errors, timeouts). ``usage=None``
    means *unknown*: an LLM call is then charged its reserved worst case (fail closed); pass
    ``Usage()`` for a call known to have cost nothing (e.g. a 4xx without usage).
    ``error_fingerprint``/``result_fingerprint`` are digests of the error / result, used by
    the stagnation detector (same error again, no new result).
    """

    call_id: str
    ts: float
    usage: Usage | None
    ok: bool
    error_fingerprint: str | None = None
    result_fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with an ``"event"`` tag."""
        data = asdict(self)
        return {"event": "settle", **data}


@dataclass(frozen=True, slots=True)
class Release:
    """The call never reached upstream: give its reservation back."""

    call_id: str
    ts: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with an ``"event"`` tag."""
        return {"event": "release", **asdict(self)}


@dataclass(frozen=True, slots=True)
class Abandon:
    """A call in flight whose outcome will never be known (found in the state at restart).

    It may have been billed, so its reserved worst case becomes spend (fail closed); it does
    not count as a failure or a stagnation step.
    """

    call_id: str
    ts: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with an ``"event"`` tag."""
        return {"event": "abandon", **asdict(self)}


@dataclass(frozen=True, slots=True)
class AddRisk:
    """Risk found outside a reservation, e.g. a guardrail finding in a response."""

    ts: float
    risk: float
    code: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with an ``"event"`` tag."""
        return {"event": "add_risk", **asdict(self)}


@dataclass(frozen=True, slots=True)
class Halt:
    """Halt from outside (operator, pool, cascade). Ignored if already halted (absorbing)."""

    ts: float
    failure_type: FailureType
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with an ``"event"`` tag."""
        return {
            "event": "halt",
            "ts": self.ts,
            "failure_type": self.failure_type.value,
            "code": self.code,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Reset:
    """Authenticated operator reset: clears the halt and starts a new run (all counters 0).

    Calls still in flight keep their reservations; they settle into the new run.
    """

    ts: float
    actor: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with an ``"event"`` tag."""
        return {"event": "reset", **asdict(self)}


@dataclass(frozen=True, slots=True)
class Lift:
    """Lift an EXTERNAL halt (a pool or cascade halt that ended) without resetting budgets.

    No effect unless the run is halted with failure type EXTERNAL and, when ``code`` is
    given, that code. Budget halts need a :class:`Reset`.
    """

    ts: float
    actor: str
    code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with an ``"event"`` tag."""
        return {"event": "lift", **asdict(self)}


Event: TypeAlias = Reserve | Settle | Release | Abandon | AddRisk | Halt | Reset | Lift


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from its ``to_dict()`` form."""
    fields = dict(data)
    tag = fields.pop("event")
    if tag == "reserve":
        return Reserve(**fields)
    if tag == "settle":
        usage = fields.pop("usage")
        return Settle(usage=None if usage is None else Usage.from_dict(usage), **fields)
    if tag == "release":
        return Release(**fields)
    if tag == "abandon":
        return Abandon(**fields)
    if tag == "add_risk":
        return AddRisk(**fields)
    if tag == "halt":
        fields["failure_type"] = FailureType(fields["failure_type"])
        return Halt(**fields)
    if tag == "reset":
        return Reset(**fields)
    if tag == "lift":
        return Lift(**fields)
    raise ValueError(f"unknown event tag {tag!r}")
