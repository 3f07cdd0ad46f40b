"""Call chains between agents: the ``x-haltgate-chain`` header and cascade detection.

When an agent calls another agent through its sidecar, the sidecar sends::

    x-haltgate-chain: trace=<32 hex>;depth=<n>;path=<ns/workload>,<ns/workload>,...

``path`` lists the agents the call passed through, the caller last. The called agent passes
the header on with its own outgoing calls (as it would a trace header; the SDK does), and
its sidecar appends itself. A sidecar that finds itself already in the path has found a
loop (A -> B -> A); a path longer than the pool's ``maxChainDepth`` is a runaway chain.
Either halts the pool. The header is data from the agent: it can be dropped (which loses
detection, never grants anything) but a malformed one is refused, not guessed at.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = ["HEADER", "MAX_PATH", "Chain", "ChainError", "Violation", "check", "extend", "parse"]

HEADER = "x-haltgate-chain"
MAX_PATH = 64
"""Longest path kept (hops beyond are still counted in ``depth``)."""
MAX_HEADER = 8192
_TRACE = re.compile(r"^[0-9a-f]{8,64}$")
# An agent identity is <namespace>/<workload>: no separators of the header inside.
_IDENTITY = re.compile(r"^[^,;=\s]{1,253}$")


class ChainError(ValueError):
    """A malformed chain header."""


@dataclass(frozen=True, slots=True)
class Chain:
    """A call chain: trace id, hops so far and the agents passed through (caller last)."""

    trace_id: str
    depth: int
    path: tuple[str, ...]

    def header(self) -> str:
        """The header value."""
        return f"trace={self.trace_id};depth={self.depth};path={','.join(self.path)}"


@dataclass(frozen=True, slots=True)
class Violation:
    """A detected cascade: ``code`` is ``cascade_loop`` or ``cascade_depth``."""

    code: str
    message: str


def parse(value: str | None) -> Chain | None:
    """The chain of an incoming header, ``None`` when there is none. Raises ChainError."""
    if value is None or not value.strip():
        return None
    if len(value) > MAX_HEADER:
        raise ChainError(f"{HEADER} is longer than {MAX_HEADER} characters")
    fields: dict[str, str] = {}
    for part in value.split(";"):
        key, sep, val = part.strip().partition("=")
        if not sep or key in fields:
            raise ChainError(f"{HEADER}: malformed field {part.strip()[:40]!r}")
        fields[key] = val.strip()
    if set(fields) != {"trace", "depth", "path"}:
        raise ChainError(f"{HEADER} needs exactly trace, depth and path")
    trace = fields["trace"]
    if not _TRACE.match(trace):
        raise ChainError(f"{HEADER}: trace must be 8-64 lowercase hex digits")
    try:
        depth = int(fields["depth"])
    except ValueError as e:
        raise ChainError(f"{HEADER}: depth is not an integer") from e
    path = tuple(p for p in fields["path"].split(",") if p) if fields["path"] else ()
    if depth < len(path) or depth < 0 or len(path) > MAX_PATH:
        raise ChainError(f"{HEADER}: depth {depth} does not match a path of {len(path)}")
    for p in path:
        if not _IDENTITY.match(p):
            raise ChainError(f"{HEADER}: bad agent identity {p[:40]!r}")
    return Chain(trace, depth, path)


def extend(incoming: Chain | None, me: str) -> Chain:
    """The chain of the call this agent makes now: a new trace, or ``incoming`` plus me."""
    if incoming is None:
        return Chain(os.urandom(16).hex(), 1, (me,))
    path = (*incoming.path, me)[-MAX_PATH:]
    return Chain(incoming.trace_id, incoming.depth + 1, path)


def check(
    incoming: Chain | None, me: str, *, max_depth: int | None, detect_loops: bool
) -> Violation | None:
    """Whether calling on from ``me`` with ``incoming`` is a cascade."""
    if incoming is None:
        return None
    if detect_loops and me in incoming.path:
        loop = " -> ".join((*incoming.path[incoming.path.index(me) :], me))
        return Violation(
            "cascade_loop", f"agent call loop detected: {loop} (trace {incoming.trace_id})"
        )
    if max_depth is not None and incoming.depth + 1 > max_depth:
        return Violation(
            "cascade_depth",
            f"agent call chain depth {incoming.depth + 1} exceeds "
            f"{max_depth} (trace {incoming.trace_id})",
        )
    return None
