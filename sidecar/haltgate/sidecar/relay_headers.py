"""The headers relayed each way: the agent's minus hop-by-hop ones (plus what haltgate
adds) to the upstream, the upstream's plus the decision and warning headers to the agent.
"""

from __future__ import annotations

from collections.abc import Mapping

from multidict import CIMultiDict, CIMultiDictProxy

from haltgate.governance.policy_base import RequestKind
from haltgate.sidecar import responses as r
from haltgate.sidecar.budget import BudgetVerdict
from haltgate.sidecar.call import Call

__all__ = ["EVENT_STREAM", "forward_headers", "relayed_items", "response_headers"]


# Hop-by-hop headers (RFC 9110 7.6.1) and those aiohttp recomputes: never relayed.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
# Also never forwarded: haltgate reads the whole body itself (Expect: 100-continue was
# answered to the agent already).
# The call-chain header is the pool stage's to set (agent upstreams only), never relayed.
_REQUEST_DROP = _HOP_BY_HOP | {"expect", "x-haltgate-chain"}
_RESPONSE_DROP = _HOP_BY_HOP - {"proxy-authenticate"}
EVENT_STREAM = "text/event-stream"


def forward_headers(headers: CIMultiDictProxy[str], call: Call) -> CIMultiDict[str]:
    """The agent's headers minus hop-by-hop ones; Host is the upstream's."""
    out: CIMultiDict[str] = CIMultiDict()
    connection_listed = headers.get("connection", "")
    extra_drop = (
        {h.strip().lower() for h in connection_listed.split(",")} if connection_listed else set()
    )
    redacted = call.redacted_headers or {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in _REQUEST_DROP or lower in extra_drop or lower in redacted:
            continue
        out.add(name, value)
    for name, values in redacted.items():
        for value in values:
            out.add(name, value)
    if call.upstream_headers:
        # The OPA decision's headers (validated by parse_decision: no framing headers);
        # haltgate's own headers below win over them.
        for name, value in call.upstream_headers.items():
            out[name] = value
    if call.chain is not None:
        out["x-haltgate-chain"] = call.chain
    c = call.classified
    if c is not None and c.view.kind in (RequestKind.LLM, RequestKind.MCP):
        # haltgate must read these answers (usage, JSON-RPC): ask for them uncompressed.
        out["Accept-Encoding"] = "identity"
    return out


def relayed_items(headers: CIMultiDictProxy[str]) -> list[tuple[str, str]]:
    """The upstream's headers the agent receives, in order (what the response guardrails
    read; positions in this list name the values they redact)."""
    return [(n, v) for n, v in headers.items() if n.lower() not in _RESPONSE_DROP]


def response_headers(
    headers: CIMultiDictProxy[str],
    call: Call,
    settle: BudgetVerdict | None,
    redacted: Mapping[int, str] | None = None,
) -> CIMultiDict[str]:
    """The upstream's headers as relayed, with the values the response guardrails
    ``redacted`` (by position in :func:`relayed_items`) in place of the originals."""
    items = relayed_items(headers)
    if redacted:
        items = [(name, redacted.get(i, value)) for i, (name, value) in enumerate(items)]
    out: CIMultiDict[str] = CIMultiDict(items)  # in order, repeated names kept
    out[r.DECISION_HEADER] = call.decision_id
    warnings = (
        settle.warnings
        if settle is not None
        else (call.reservation.warnings if call.reservation else ())
    )
    if warnings:
        out[r.WARNING_HEADER] = ",".join(warnings)
    return out
