"""MCP decisions in the sidecar: every JSON-RPC message of a request decided and budgeted alone.

MCP is handled in three modules, and nowhere else knows its details:
:mod:`haltgate.sidecar.mcp_messages` reads a body into elements (classification), this
module decides and budgets them, :mod:`haltgate.sidecar.mcp_answers` filters the answers
(server requests the policy denies, hidden listing entries). The pipeline calls in here at
two points:

1. :func:`authorize` (after the tool rules): ``spec.mcp`` rules for resources, prompts and
   completions, element by element; the risk of each element; ``initialize`` loses the
   capabilities the policy denies (sampling, elicitation).
2. :func:`reserve` / :func:`settle` / :func:`release` (budget): one reservation per element
   that does work upstream (tools/call, resources/read, prompts/get, ...), so a batch of 50
   tool calls is 50 calls, 50 tools for ``distinctTools`` and 50 risks. The elements are
   reserved all or nothing in one synchronous engine step sequence with one state write
   (``Governor.apply_all``): concurrent batches cannot overspend, and if one element is
   refused none stays reserved and the batch is refused whole.
   Protocol and session messages (initialize, notifications, ping, listings, the GET stream,
   DELETE) reserve nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from haltgate.governance.audit.redact import state_key
from haltgate.governance.errors import DeniedError
from haltgate.governance.mcp import McpAuthorizer, strip_client_capabilities
from haltgate.governance.policy_base import FailureType
from haltgate.governance.tools import ToolAuthorizer
from haltgate.sidecar.mcp_messages import McpCallState, McpMessage

if TYPE_CHECKING:
    from haltgate.sidecar.budget import Budget, BudgetVerdict
    from haltgate.sidecar.call import Call

__all__ = ["authorize", "read_outcomes", "release", "reserve", "settle"]


def _raise(err: DeniedError) -> None:
    raise err


def authorize(
    call: Call,
    tools: ToolAuthorizer,
    rules: McpAuthorizer,
    refuse: Callable[[DeniedError], None] = _raise,
) -> McpCallState:
    """``spec.mcp`` for each element; the risk of each budgeted element. ``refuse`` gets
    the refusal of each element ``spec.mcp`` denies: it raises (the batch fails whole at
    the first), or, in monitor mode, notes it and the element goes on (risk 0)."""
    classified = call.classified
    assert classified is not None and classified.mcp is not None
    message: McpMessage = classified.mcp
    view = classified.view
    servers = (view.upstream, view.host)
    state = McpCallState(message)
    extra_risk = 0.0
    tool_risk = call.authz.risk if call.authz is not None else 0.0
    single_tool = len(view.tool_calls) == 1
    for e in message.elements:
        risk = 0.0
        if e.tool is not None:
            # The batch as a whole already passed the tool rules (and their risks add up to
            # ``tool_risk``); per element only to split that risk.
            if single_tool or not tool_risk:
                risk = tool_risk
            else:
                risk = tools.authorize(replace(view, tool_calls=(e.tool,))).risk
        elif e.resource is not None:
            risk = _check(rules.resources.decide(servers, e.resource), refuse)
            extra_risk += risk
        elif e.prompt is not None:
            risk = _check(rules.prompts.decide(servers, e.prompt), refuse)
            extra_risk += risk
        elif e.method in ("resources/list", "resources/templates/list"):
            _check(rules.resources.lists(servers, e.method), refuse)
        elif e.method == "prompts/list":
            _check(rules.prompts.lists(servers, e.method), refuse)
        if e.budgeted:
            state.risks.append(risk)
    call.risk += extra_risk
    _strip_capabilities(call, rules)
    return state


def _check(result: Any, refuse: Callable[[DeniedError], None]) -> float:
    if not result.allowed:
        refuse(
            DeniedError(
                result.message, code=result.code or "mcp_denied", failure_type=FailureType.SAFETY
            )
        )
        return 0.0
    return float(result.risk)


def _strip_capabilities(call: Call, rules: McpAuthorizer) -> None:
    """Remove denied client capabilities from ``initialize`` (the forwarded body changes)."""
    classified = call.classified
    assert classified is not None and classified.mcp is not None
    if rules.sampling and rules.elicitation:
        return
    body = classified.body
    changed = False
    for e in classified.mcp.elements:
        if e.method != "initialize":
            continue
        params = strip_client_capabilities(
            e.params, sampling=rules.sampling, elicitation=rules.elicitation
        )
        if params is None:
            continue
        if classified.mcp.batch:
            body = [*body] if not changed else body
            body[e.index] = {**body[e.index], "params": params}
        else:
            body = {**body, "params": params}
        changed = True
    if changed:
        classified.body = body
        call.forward_body = orjson.dumps(body)


# --------------------------------------------------------------------------- budget


def reserve(budget: Budget, call: Call, state: McpCallState) -> BudgetVerdict | None:
    """One reservation per budgeted element; ``None`` when nothing is budgeted.

    Returns the last verdict; a refused one after releasing the elements reserved before
    it (the caller refuses the whole request)."""
    elements = state.message.budgeted
    if not elements:
        return None
    view = call.classified.view if call.classified is not None else None
    assert view is not None
    # Guardrail and OPA risk concern the request as a whole: charged with its first element.
    residual = max(call.risk - sum(state.risks), 0.0)
    # Names the budget state keeps on disk: never a secret an agent put in a tool name.
    host = state_key(view.host) or ""
    if len(elements) == 1:
        # One message: the plain path (what a single call always cost).
        e = elements[0]
        verdict = budget.reserve(
            call_id=call.decision_id,
            ts=call.ts,
            kind="mcp",
            host=host,
            tool=state_key(e.tool.name) if e.tool is not None else None,
            model=None,
            max_input_tokens=0,
            max_output_tokens=0,
            fingerprint=e.fingerprint(),
            risk=state.risks[0] + residual,
        )
        if verdict.allowed:
            state.sub_ids = (call.decision_id,)
        return verdict
    sub_ids = tuple(f"{call.decision_id}.{n}" for n in range(len(elements)))
    verdict = budget.reserve_all(
        [
            {
                "call_id": sub_id,
                "ts": call.ts,
                "kind": "mcp",
                "host": host,
                "tool": state_key(e.tool.name) if e.tool is not None else None,
                "model": None,
                "max_input_tokens": 0,
                "max_output_tokens": 0,
                "fingerprint": e.fingerprint(),
                "risk": risk + (residual if n == 0 else 0.0),
            }
            for n, (sub_id, e, risk) in enumerate(zip(sub_ids, elements, state.risks, strict=True))
        ]
    )
    if verdict.allowed:
        state.sub_ids = sub_ids
    return verdict


def read_outcomes(state: McpCallState, body: bytes) -> None:
    """Each element's outcome from a JSON answer (by JSON-RPC id), when there are several
    (one element's outcome is the request's)."""
    if len(state.sub_ids) < 2:
        return
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    for msg in obj if isinstance(obj, list) else [obj]:
        if not isinstance(msg, dict) or "id" not in msg:
            continue
        result = msg.get("result")
        failed = "error" in msg or (isinstance(result, dict) and result.get("isError") is True)
        digest = hashlib.blake2b(
            orjson.dumps(msg.get("error") or result, option=orjson.OPT_SORT_KEYS), digest_size=16
        ).hexdigest()
        state.outcomes[repr(msg["id"])] = (
            not failed,
            digest if failed else None,
            None if failed else digest,
        )


def settle(
    budget: Budget,
    state: McpCallState,
    ts: float,
    ok: bool,
    error_fp: str | None,
    result_fp: str | None,
) -> BudgetVerdict | None:
    """Settle every element's reservation (its own outcome when the answer told it)."""
    if len(state.sub_ids) == 1:
        sub_id, state.sub_ids = state.sub_ids[0], ()
        return budget.settle(
            call_id=sub_id,
            ts=ts,
            usage=None,
            ok=ok,
            error_fingerprint=error_fp,
            result_fingerprint=result_fp,
        )
    settlements = []
    for sub_id, e in zip(state.sub_ids, state.message.budgeted, strict=True):
        own = state.outcomes.get(repr(e.msg_id))
        e_ok, e_err, e_res = own if own is not None and ok else (ok, error_fp, result_fp)
        settlements.append(
            {
                "call_id": sub_id,
                "ts": ts,
                "usage": None,
                "ok": e_ok,
                "error_fingerprint": e_err,
                "result_fingerprint": e_res,
            }
        )
    state.sub_ids = ()
    return budget.settle_all(settlements) if settlements else None


def release(budget: Budget, state: McpCallState, ts: float) -> None:
    """Give every element's reservation back (the request never left)."""
    if len(state.sub_ids) == 1:
        budget.release(state.sub_ids[0], ts)
    else:
        budget.release_all(list(state.sub_ids), ts)
    state.sub_ids = ()
