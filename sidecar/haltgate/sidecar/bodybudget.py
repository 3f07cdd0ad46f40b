"""The sidecar-wide budget of body bytes held in memory.

Each governed call may hold its request body (up to the policy's ``maxBodyBytes``) and a
whole non-streamed answer (up to ``max_buffered_response_bytes``) in memory; the process
holds roughly three times those bytes while it works on them (the parsed JSON, the body
sent upstream, the audit record). Per-call limits alone do not bound the sum: sixty
concurrent 10 MB bodies took the sidecar past 6 GB. :class:`BodyBudget` bounds it: a call
takes the bytes it will hold before reading them and gives them back when it ends; a call
that does not fit is refused with 503 ``memory_budget_exhausted`` and ``Retry-After``,
before its body is read.

A call always fits when no other call holds anything, so a body larger than the whole budget (a
policy with a large ``maxBodyBytes``) is still served, one at a time.
"""

from __future__ import annotations

from typing import Any

from haltgate.governance.errors import UnavailableError

__all__ = ["DEFAULT_BODY_BUDGET", "BodyBudget", "MemoryBudgetError"]

DEFAULT_BODY_BUDGET = 96 * 1024 * 1024
"""Default budget (bytes): with a 512 MiB container limit, about three times this plus the
idle process (~75-150 MiB, more with the guardrails model) stays under the limit."""


class MemoryBudgetError(UnavailableError):
    """The body memory budget is used up: refuse, the agent retries later (503)."""


class BodyBudget:
    """Bytes of bodies held in memory, process-wide (one event loop: no lock needed)."""

    __slots__ = ("_refusals", "held", "limit")

    def __init__(
        self,
        limit: int = DEFAULT_BODY_BUDGET,
        *,
        gauge: Any | None = None,
        refusals: Any | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("body memory budget must be at least 1 byte")
        self.limit = limit
        self.held = 0
        self._refusals = refusals
        if gauge is not None:
            # Read when the metrics are scraped: no locked gauge update at each take and
            # give (three per call).
            gauge.set_function(lambda: self.held)

    def take(self, nbytes: int, direction: str, own: int = 0) -> None:
        """Hold ``nbytes`` more for a call already holding ``own``, or raise
        :class:`MemoryBudgetError` (nothing taken). A call holding all that is held fits."""
        if nbytes <= 0:
            return
        if self.held > own and self.held + nbytes > self.limit:
            if self._refusals is not None:
                self._refusals.labels(direction).inc()
            raise MemoryBudgetError(
                f"the sidecar holds {self.held} body bytes of its {self.limit}-byte memory "
                f"budget; this call's {direction} body of {nbytes} bytes does not fit: "
                "retry later",
                code="memory_budget_exhausted",
            )
        self.held += nbytes

    def give(self, nbytes: int) -> None:
        """Give back bytes taken earlier."""
        if nbytes <= 0:
            return
        self.held = max(self.held - nbytes, 0)
