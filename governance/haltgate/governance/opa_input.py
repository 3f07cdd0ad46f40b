"""The input document of an OPA decision (``input`` in Rego), built from one call.

Its layout is documented in ``docs/policies.md`` and versioned by :data:`INPUT_VERSION`.
It holds no volatile values (ids, timestamps): the serialized input is also the key of the
evaluator's decision cache.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypedDict

from haltgate.governance.engine.pricing import normalise_model
from haltgate.governance.request import CallView
from haltgate.governance.tools import AuthzResult

__all__ = ["INPUT_VERSION", "OPAInput", "build_input"]

INPUT_VERSION: Final = 1
"""Version of the input document schema; bumped only on incompatible changes."""


class OPARequest(TypedDict):
    kind: str | None
    method: str
    scheme: str
    host: str
    port: int
    path: str
    upstream: str | None
    model: str | None
    model_normalised: str | None
    mcp_method: str | None
    stream: bool
    max_output_tokens: int | None
    query: dict[str, list[str]]


class OPATool(TypedDict):
    name: str
    server: str | None
    arguments: Any


class OPAAuthz(TypedDict):
    allowed: bool
    rule: str | None
    risk: float
    code: str | None


class OPAMcpMessage(TypedDict):
    """One JSON-RPC message of an MCP request."""

    method: str | None
    uri: str | None
    prompt: str | None


class OPAInput(TypedDict):
    """The input document of every decision (``input`` in Rego). See docs/policies.md."""

    version: int
    agent: dict[str, str]
    request: OPARequest
    tools: list[OPATool]
    mcp: list[OPAMcpMessage]
    authz: OPAAuthz | None
    budget: dict[str, Any]
    usage: dict[str, Any]
    findings: list[Any]


def _plain(value: Any) -> Any:
    """Findings and budget entries as JSON-ready values: their own ``to_dict()`` /
    ``as_dict()`` (guardrail findings: never the matched text), else dataclass fields."""
    for method in ("to_dict", "as_dict"):
        convert = getattr(value, method, None)
        if callable(convert):
            return convert()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _query_params(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


def build_input(
    call: CallView,
    *,
    authz: AuthzResult | None = None,
    budget: Mapping[str, Any] | None = None,
    usage: Mapping[str, Any] | None = None,
    findings: Sequence[Any] = (),
) -> OPAInput:
    """Build the documented input document for one call.

    ``budget`` is the engine's per-dimension view (``{"tokens": {"used", "reserved",
    "limit"}, ...}``), ``usage`` the run's totals so far (calls, tokens, cost), ``findings``
    the guardrail findings on the request. Keep volatile values (ids, timestamps) out: they
    would make every input unique and defeat the decision cache.
    """
    return {
        "version": INPUT_VERSION,
        "agent": call.agent.as_dict(),
        "request": {
            "kind": call.kind.value if call.kind is not None else None,
            "method": call.method,
            "scheme": call.scheme,
            "host": call.host,
            "port": call.port,
            "path": call.path,
            "upstream": call.upstream,
            "model": call.model,
            # As pricing and `models` rules read it (lower case, no provider prefix or
            # date snapshot): Rego compares this, not the spelling the agent chose.
            "model_normalised": normalise_model(call.model) if call.model else None,
            "mcp_method": call.mcp_method,
            "stream": call.stream,
            "max_output_tokens": call.max_output_tokens,
            # The query as read once and forwarded: every value of every name, in order
            # (Rego sees a repeated name whole; canonical_query).
            "query": _query_params(call.query),
        },
        "tools": [
            {"name": t.name, "server": t.server, "arguments": t.arguments} for t in call.tool_calls
        ],
        "mcp": [{"method": m, "uri": u, "prompt": p} for m, u, p in call.mcp_messages],
        "authz": None
        if authz is None
        else {
            "allowed": authz.allowed,
            "rule": authz.rule,
            "risk": authz.risk,
            "code": authz.code,
        },
        "budget": {k: _plain(v) for k, v in (budget or {}).items()},
        "usage": dict(usage or {}),
        "findings": [_plain(f) for f in findings],
    }
