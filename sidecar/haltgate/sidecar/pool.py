"""The pool stage of the pipeline: cascade checks, the call-chain header, pool accounting.

Runs after the policy decision and before the agent's own budget reserve:

1. call chain: an incoming ``x-haltgate-chain`` header (the agent passes on the one it was
   called with) is parsed and checked; a loop or a chain deeper than the pool's limit
   halts the pool and refuses the call (EXTERNAL). Calls to upstreams marked ``agent: true``
   get the extended header; the header is never sent to other upstreams.
2. pool: the call's worst case (1 call, its input + output tokens, its worst-case cost) is
   reserved from the member's lease (:class:`~haltgate.governance.pool.client.PoolClient`),
   with no database round trip while the lease has room. Settled to the actual usage
   after the answer, released when the call never left.

The stage keeps no per-request state of its own: what it needs later lives on the
pipeline's ``Call`` (``pool_need``, ``chain``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from haltgate.governance.errors import (
    BadRequestError,
    DeniedError,
    HaltgateError,
    UnavailableError,
)
from haltgate.governance.policy_base import FailureType, RequestKind
from haltgate.governance.pool import cascade
from haltgate.governance.pool.client import PoolClient
from haltgate.governance.pool.lease import Amounts

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

    from haltgate.sidecar.call import Call
    from haltgate.sidecar.usage import TokenCounts

__all__ = ["PoolStage"]

log = logging.getLogger("haltgate.sidecar.pool")

_ONE_CALL = Amounts(calls=1)


class PoolStage:
    """Cascade detection and shared-budget accounting for one sidecar.

    ``client`` is ``None`` when the agent draws from no pool (chain checks still run for
    agent upstreams). ``unconfigured``: the policy names a pool but the sidecar was given
    no pool database: every call is refused (fail closed) rather than spent uncounted.
    """

    def __init__(
        self,
        *,
        me: str,
        client: PoolClient | None,
        prices: Any | None = None,
        default_max_output_tokens: int = 4096,
        unconfigured: str | None = None,
        governor: Any | None = None,
    ) -> None:
        self.me = me
        """This agent's identity in call chains: ``<namespace>/<workload>``."""
        self.client = client
        self.prices = prices
        self.default_max_output_tokens = default_max_output_tokens
        self.unconfigured = unconfigured
        self.governor = governor
        self._agents: tuple[int, frozenset[str]] = (0, frozenset())

    # ------------------------------------------------------------------ before forwarding

    def refusal(self) -> HaltgateError | None:
        """Why a new connection must be refused (pool halted or unconfigured), if so.
        For CONNECT and passthrough tunnels, which are not metered per call."""
        if self.unconfigured is not None:
            return UnavailableError(self.unconfigured, code="pool_unconfigured")
        return self.client.check() if self.client is not None else None

    def has_work(self, call: Call, headers: CIMultiDictProxy[str]) -> bool:
        """Whether :meth:`admit` has anything to do for ``call``: a shared pool (or its
        missing configuration), a chain header to check, or a call to an agent upstream.
        Without any, the stage is not entered (two coroutines per call for nothing)."""
        return (
            self.unconfigured is not None
            or self.client is not None
            or cascade.HEADER in headers
            or self._is_agent(call)
        )

    async def admit(self, call: Call, headers: CIMultiDictProxy[str]) -> None:
        """Check the call chain and reserve the call's worst case from the pool."""
        if self.unconfigured is not None:
            raise UnavailableError(self.unconfigured, code="pool_unconfigured")
        await self._check_chain(call, headers)
        client = self.client
        if client is None:
            return
        need = self._worst_case(call)
        refusal = await client.reserve(call.decision_id, need)
        if refusal is not None:
            raise refusal
        call.pool_need = need

    async def _check_chain(self, call: Call, headers: CIMultiDictProxy[str]) -> None:
        raw = headers.get(cascade.HEADER)
        to_agent = self._is_agent(call)
        if raw is None and not to_agent:
            return
        try:
            incoming = cascade.parse(raw)
        except cascade.ChainError as e:
            raise BadRequestError(str(e), code="invalid_chain_header") from e
        config = self.client.config if self.client is not None else None
        violation = cascade.check(
            incoming,
            self.me,
            max_depth=config.max_chain_depth if config is not None else None,
            detect_loops=config.detect_loops if config is not None else True,
        )
        if violation is not None:
            if self.client is not None:
                log.warning(
                    "cascade detected, halting pool %s: %s",
                    self.client.settings.pool,
                    violation.message,
                )
                await self.client.halt(violation.code, violation.message, self.me)
            raise DeniedError(
                violation.message, code=violation.code, failure_type=FailureType.EXTERNAL
            )
        if to_agent:
            call.chain = cascade.extend(incoming, self.me).header()

    def _is_agent(self, call: Call) -> bool:
        target = call.target
        if target is None or target.upstream is None:
            return False
        spec = call.controls.spec
        key, names = self._agents
        if key != id(spec):
            names = frozenset(u.name for u in spec.upstreams if u.agent)
            self._agents = (id(spec), names)
        return target.upstream.name in names

    def _worst_case(self, call: Call) -> Amounts:
        classified = call.classified
        view = classified.view if classified is not None else None
        if view is not None and call.mcp is not None:
            # One call per MCP message that does work upstream (a batch is many, protocol
            # and session messages none), as the agent's own budget counts them.
            return Amounts(calls=len(call.mcp.message.budgeted))
        if view is None or view.kind is not RequestKind.LLM:
            return _ONE_CALL
        max_in = len(call.forward_body or call.body)
        max_out = (
            view.max_output_tokens
            if view.max_output_tokens is not None
            else self.default_max_output_tokens
        )
        cost = 0
        if self.prices is not None and view.model:
            cost = self.prices.worst_case_pico(view.model, max_in, max_out) or 0
        return Amounts(
            calls=1,
            tokens=max_in + max_out,
            input_tokens=max_in,
            output_tokens=max_out,
            cost_pico=cost,
        )

    # ------------------------------------------------------------------ after

    def settle(self, call: Call, counts: TokenCounts | None, ok: bool) -> None:
        """Charge the call's actual usage (its reservation when usage is unknown)."""
        client, need = self.client, call.pool_need
        if client is None:
            return
        if not ok:
            client.note_error()
        if need is None:
            return
        call.pool_need = None
        client.settle(call.decision_id, self._actual(call, counts, need))
        self.after_decision()

    def release(self, call: Call) -> None:
        """The call never reached upstream: give its reservation back."""
        client, need = self.client, call.pool_need
        if client is not None and need is not None:
            call.pool_need = None
            client.release(call.decision_id)
        self.after_decision()

    def after_decision(self) -> None:
        """Report this member's run halt once (the pool's halt-storm rule)."""
        client, governor = self.client, self.governor
        if client is None or governor is None:
            return
        if governor.halted:
            halt = governor.snapshot().get("halt") or {}
            if halt.get("failure_type") != FailureType.EXTERNAL.value:
                client.member_halted(str(halt.get("code") or "halted"))
        else:
            client.member_recovered()

    def _actual(self, call: Call, counts: TokenCounts | None, need: Amounts) -> Amounts:
        if counts is None:
            # Nothing to measure (HTTP/MCP tools, or an LLM answer without usage): charge
            # what was reserved - fail closed, as the budget engine does.
            return need
        cost = need.cost_pico
        if self.prices is not None and (
            counts.model or (call.classified and call.classified.view.model)
        ):
            from haltgate.sidecar.budget_stages import engine_usage as _engine_usage

            model = call.classified.view.model if call.classified else None
            priced = self.prices.cost_pico(_engine_usage(counts), model)
            if priced is not None:
                cost = priced
        return Amounts(
            calls=1,
            tokens=counts.input_tokens + counts.output_tokens,
            input_tokens=counts.input_tokens,
            output_tokens=counts.output_tokens,
            cost_pico=cost,
        )

    def snapshot(self) -> dict[str, Any] | None:
        """The member's view of its pool, for the admin API's /status."""
        if self.unconfigured is not None:
            return {"state": "Unconfigured", "message": self.unconfigured}
        return self.client.snapshot() if self.client is not None else None

    async def close(self) -> None:
        """Return the lease (at shutdown, after the pipeline drained)."""
        if self.client is not None:
            await self.client.close()
