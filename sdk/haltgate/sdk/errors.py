"""haltgate's refusals as Python exceptions, and the parsers that build them.

The sidecar refuses a call with a typed error (``docs/sidecar.md``, "Refusals and errors"):
an HTTP JSON body ``{"error": {"type", "code", "message", "decision_id", "budget"}}``, the
same object in the ``data`` of a JSON-RPC error (MCP), or a final SSE ``event: error`` in a
stream it cuts. Every parser here returns the matching exception (or ``None`` when the input
is not a haltgate error), so an agent can ``except ExhaustionError`` whatever the transport.

Hierarchy::

    HaltgateError                 anything haltgate reported
    +-- HaltError                 a governance refusal (it has a failure type)
    |   +-- ExhaustionError       EXHAUSTION: a budget is used up
    |   +-- StagnationError       STAGNATION: the agent repeats itself
    |   +-- OverriskError         OVERRISK: accumulated risk passed its limit
    |   +-- SafetyError           SAFETY: a rule forbids the call
    |   |   +-- DeniedError       ... one call refused by a tool rule, guardrail or OPA
    |   +-- ExternalHaltError     EXTERNAL: halted from outside (operator, pool)
    +-- SidecarError              not a governance decision: bad input, upstream, unavailable

No retry helps a :class:`HaltError`: the same call gets the same answer until an operator
resets the run or a budget period frees room (``retry_after``). :class:`DeniedError` is the
one refusal after which the *agent* may go on with a different action; ``terminal`` says so.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Mapping
from typing import Any

from haltgate.sdk.wire import (
    CATEGORIES,
    DECISION_HEADER,
    RETRY_AFTER_HEADER,
    RUN_HALT_CODES,
    RUN_HALT_PREFIXES,
    FailureType,
)

__all__ = [
    "DeniedError",
    "ExhaustionError",
    "ExternalHaltError",
    "HaltError",
    "HaltgateError",
    "OverriskError",
    "SafetyError",
    "SidecarError",
    "StagnationError",
    "error_from_body",
    "error_from_jsonrpc",
    "error_from_sse_data",
    "find_haltgate_error",
    "remember",
]

MAX_MESSAGE_CHARS = 512
"""Messages come from the network: cut to a fixed size."""

MAX_BODY_BYTES = 1024 * 1024
"""Error bodies larger than this are not parsed (a haltgate error is a few hundred bytes)."""

RECENT_HALTS = 64
"""How many of the halts the SDK raised it remembers, to find them again behind a framework
that re-raised them as text (see :func:`find_haltgate_error`)."""


class HaltgateError(Exception):
    """Root of every error haltgate reported to the agent.

    ``type``: the ``error.type`` of the body (a failure type, or a category such as
    ``unavailable``); ``code``: stable snake_case reason; ``decision_id``: the sidecar's id
    of the decision (audit record, logs, ``x-haltgate-decision-id``); ``budget``: per
    dimension ``{"used", "reserved", "limit"}`` when the refusal came from a budget;
    ``status``: the HTTP status when there was one; ``retry_after``: seconds, when a budget
    period will free room.
    """

    def __init__(
        self,
        message: str,
        *,
        type: str,
        code: str,
        decision_id: str | None = None,
        budget: Mapping[str, Mapping[str, float]] | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        message = message[:MAX_MESSAGE_CHARS]
        super().__init__(f"{type} {code}: {message}")
        self.message = message
        self.type = type
        self.code = code
        self.decision_id = decision_id
        self.budget = {k: dict(v) for k, v in budget.items()} if budget else None
        self.status = status
        self.retry_after = retry_after

    @property
    def terminal(self) -> bool:
        """True when retrying the same call cannot succeed (a halt)."""
        return False

    @property
    def retryable(self) -> bool:
        """True when a later retry of the same call may succeed (transient failure)."""
        return False


class HaltError(HaltgateError):
    """A governance refusal: the call was not forwarded. See ``failure_type``."""

    failure_type: FailureType = FailureType.EXTERNAL

    @property
    def terminal(self) -> bool:
        return True


class ExhaustionError(HaltError):
    """EXHAUSTION: a budget (calls, tokens, cost, wall time, failures) is used up."""

    failure_type = FailureType.EXHAUSTION


class StagnationError(HaltError):
    """STAGNATION: the agent repeats the same call or makes no progress."""

    failure_type = FailureType.STAGNATION


class OverriskError(HaltError):
    """OVERRISK: the run's accumulated risk passed its limit, or its behaviour drifted
    from its baseline for long enough (code ``behaviour_drift``, ``spec.drift``)."""

    failure_type = FailureType.OVERRISK


class SafetyError(HaltError):
    """SAFETY: the policy forbids the call."""

    failure_type = FailureType.SAFETY


class DeniedError(SafetyError):
    """One call refused by a tool rule, a guardrail or OPA; the run itself is not halted.

    The agent may continue with a different action; retrying this one is pointless.
    """

    @property
    def terminal(self) -> bool:
        return False


class ExternalHaltError(HaltError):
    """EXTERNAL: the run was halted from outside (operator, budget pool, cascade)."""

    failure_type = FailureType.EXTERNAL


class SidecarError(HaltgateError):
    """Not a governance decision: invalid input, unknown alias, upstream failure, or a
    fail-closed control (audit, OPA) being unavailable."""

    @property
    def retryable(self) -> bool:
        return self.type in ("unavailable", "upstream_error")


_BY_FAILURE: dict[str, type[HaltError]] = {
    FailureType.EXHAUSTION.value: ExhaustionError,
    FailureType.STAGNATION.value: StagnationError,
    FailureType.OVERRISK.value: OverriskError,
    FailureType.SAFETY.value: SafetyError,
    FailureType.EXTERNAL.value: ExternalHaltError,
}


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out >= 0 else None


def _budget(value: Any) -> dict[str, dict[str, float]] | None:
    if not isinstance(value, Mapping):
        return None
    out: dict[str, dict[str, float]] = {}
    for dim, entry in value.items():
        if isinstance(dim, str) and isinstance(entry, Mapping):
            out[dim] = {k: float(v) for k, v in entry.items()
                        if isinstance(k, str) and isinstance(v, int | float)}  # fmt: skip
    return out or None


def _error_class(type_: str, code: str) -> type[HaltgateError]:
    cls = _BY_FAILURE.get(type_)
    if cls is SafetyError and code not in RUN_HALT_CODES and not code.startswith(RUN_HALT_PREFIXES):
        return DeniedError
    return cls or SidecarError


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    if value is None:  # plain dicts are case-sensitive
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def _loads(raw: bytes | bytearray | str) -> Any:
    """The JSON value of a network input; ``None`` when it is too large or not JSON."""
    if len(raw) > MAX_BODY_BYTES:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def error_from_body(
    body: Any,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> HaltgateError | None:
    """The exception for a haltgate error object, or ``None`` if ``body`` is not one.

    ``body``: the whole JSON body ``{"error": {...}}``, the inner ``error`` object, or raw
    bytes/str of either. Only objects with a known ``type`` and a string ``code`` count: an
    upstream's own error (``{"error": {"type": "invalid_request_error"}}``) is not haltgate's.
    When ``headers`` are given, a response without ``x-haltgate-decision-id`` is not
    haltgate's either.
    """
    if isinstance(body, bytes | bytearray | str):
        body = _loads(body)
    if not isinstance(body, Mapping):
        return None
    inner = body.get("error", body)
    if not isinstance(inner, Mapping):
        return None
    type_, code = inner.get("type"), inner.get("code")
    if not isinstance(type_, str) or not isinstance(code, str):
        return None
    if type_ not in _BY_FAILURE and type_ not in CATEGORIES:
        return None
    if headers is not None and _header(headers, DECISION_HEADER) is None:
        return None
    decision_id = inner.get("decision_id") or _header(headers, DECISION_HEADER)
    message = inner.get("message")
    return _error_class(type_, code)(
        message if isinstance(message, str) else code,
        type=type_,
        code=code,
        decision_id=decision_id if isinstance(decision_id, str) else None,
        budget=_budget(inner.get("budget")),
        status=status,
        retry_after=_number(_header(headers, RETRY_AFTER_HEADER)),
    )


def error_from_jsonrpc(message: Any) -> HaltgateError | None:
    """The exception for a JSON-RPC error answer of the sidecar (MCP), else ``None``.

    ``message``: one JSON-RPC message, a batch (list; the first haltgate error wins, since
    the sidecar refuses a batch as a whole), or raw bytes/str of either.
    """
    if isinstance(message, bytes | bytearray | str):
        message = _loads(message)
    for msg in message if isinstance(message, list) else [message]:
        if isinstance(msg, Mapping) and isinstance(msg.get("error"), Mapping):
            err = error_from_body(msg["error"].get("data"))
            if err is not None:
                return err
    return None


def error_from_sse_data(data: str | bytes) -> HaltgateError | None:
    """The exception for the ``data`` of a final ``event: error`` of a cut stream."""
    return error_from_body(data)


_recent: deque[HaltgateError] = deque(maxlen=RECENT_HALTS)

_TEXT = re.compile(r"^(?:[\w.]+: )?(\w+Error): ([A-Za-z_]+) ([a-z0-9_]+): (.*)$")
"""``<ClassName>: <type> <code>: <message>``: a halt turned into text by a framework
(AutoGen teams raise ``RuntimeError(f"{type(e).__name__}: {e}")``)."""


def remember(error: HaltgateError) -> None:
    """Keep ``error`` (bounded) so :func:`find_haltgate_error` can return the very object
    when a framework hands it back as text only."""
    if not any(e is error for e in _recent):
        _recent.append(error)


def _from_text(exc: BaseException) -> HaltgateError | None:
    """A halt a framework re-raised as text: the remembered object, else one rebuilt from
    the text (type, code and message; decision id and budget are lost then)."""
    first = str(exc).split("\n", 1)[0]
    match = _TEXT.match(first)
    if match is None:
        return None
    name, type_, code, message = match.groups()
    for known in reversed(_recent):
        if type(known).__name__ == name and str(known) == f"{type_} {code}: {message}":
            return known
    cls = _error_class(type_, code)
    if cls.__name__ != name or (type_ not in _BY_FAILURE and type_ not in CATEGORIES):
        return None
    return cls(message, type=type_, code=code)


def find_haltgate_error(exc: BaseException | None) -> HaltgateError | None:
    """The haltgate error behind an exception raised by an HTTP or LLM client, if any.

    Recognises, by duck typing (no client library is imported): haltgate's own exceptions;
    ``openai.APIError`` (``body`` is the parsed error object, for HTTP errors and for SSE
    ``error`` events alike; ``response`` carries status and headers);
    ``httpx.HTTPStatusError`` / ``requests.HTTPError`` (``response`` with the JSON body);
    any exception with a ``body`` in the sidecar's error format (the in-process
    governor's refusals); any of these in the ``__cause__``/``__context__`` chain
    (bounded); and, last, a halt a framework re-raised as text (AutoGen teams'
    ``RuntimeError``), which gives back the halt the SDK raised when it still knows it.
    """
    seen = 0
    first = exc
    while exc is not None and seen < 8:
        seen += 1
        if isinstance(exc, HaltgateError):
            return exc
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None) or getattr(response, "status", None)
        headers = getattr(response, "headers", None)
        body = getattr(exc, "body", None)
        if body is not None:
            found = error_from_body(body, status=status if isinstance(status, int) else None,
                                    headers=None)  # fmt: skip
            if found is not None:
                if headers is not None:
                    found.retry_after = _number(_header(headers, RETRY_AFTER_HEADER))
                return found
        if response is not None:
            content = getattr(response, "content", None)
            if isinstance(content, bytes):
                found = error_from_body(content, status=status if isinstance(status, int)
                                        else None, headers=headers)  # fmt: skip
                if found is not None:
                    return found
        exc = exc.__cause__ or exc.__context__
    return _from_text(first) if first is not None else None
