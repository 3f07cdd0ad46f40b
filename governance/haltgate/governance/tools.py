"""Tool authorization: the ``spec.tools`` rules, compiled once, checked on every call.

A rule matches a call when every matcher it sets matches (an empty list matches anything):

- target matchers: ``kind``, ``hosts`` (globs, case-insensitive), ``methods``, ``paths``
  (globs, ``*`` stays within one path segment, ``**`` crosses segments, the query string is
  ignored; matched against the canonical path, see ``haltgate.governance.canonical``; deny
  rules match it regardless of case and of a trailing ``/``, allow rules exactly, so an
  upstream that reads paths leniently is never reached through a spelling a deny rule
  misses), ``models`` (globs, case-insensitive, over the model name as sent and as pricing
  normalises it: trimmed, provider prefix and date snapshot removed; see
  ``haltgate.governance.llm_body.model_forms``), ``mcpServers`` (globs over the upstream
  alias, the tool call's server and the host);
- tool matchers: ``mcpTools`` (globs over the tool name) and ``arguments`` (constraints on
  the tool arguments, all of which must hold). The arguments of a plain HTTP call (rules of
  ``kind: http``) are its query parameters, ``{"query": {name: value}}``, as
  ``haltgate.governance.canonical_query`` read them once (a parameter a rule reads is
  never repeated nor spelled two ways); the canonical query is what is forwarded.

Deny wins: if any deny rule matches, the call is denied whatever the allow rules say. Else
the call is allowed if an allow rule matches, else ``spec.tools.default`` decides (deny
unless the policy says otherwise). A JSON-RPC batch with several ``tools/call`` is allowed
only if every tool call in it is.

MCP protocol messages other than ``tools/call`` (``initialize``, ``tools/list``, ``ping``,
notifications) carry no tool: allow rules apply to them by their target matchers only (an
agent allowed to call some tool of a server may talk MCP to that server), and deny rules
that name tools or argument constraints do not apply to them (they deny tools, not the
server). ``tools/list`` responses are filtered with :meth:`ToolAuthorizer.filter_tools_list`.

Everything that can be compiled is compiled in the constructor (globs to one regular
expression per matcher, JSON paths to key tuples), so :meth:`ToolAuthorizer.authorize` does
no parsing on the hot path. The glob language is in ``haltgate.governance.glob_match``, the
argument constraints in ``haltgate.governance.tool_arguments``; this module matches rules to
calls and decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from haltgate.governance.glob_match import compile_glob
from haltgate.governance.llm_body import model_forms
from haltgate.governance.policy_base import Action, RequestKind
from haltgate.governance.policy_rules import ToolRule, Tools
from haltgate.governance.request import CallView, ToolCall
from haltgate.governance.tool_arguments import ArgumentCheck, compile_argument_check

__all__ = [
    "CODE_ARGUMENT_CONSTRAINT_FAILED",
    "CODE_TOOL_DENIED",
    "CODE_TOOL_NOT_ALLOWED",
    "AuthzResult",
    "ToolAuthorizer",
    "find_conflicts",
]

CODE_TOOL_DENIED: Final = "tool_denied"
"""A deny rule matched."""
CODE_TOOL_NOT_ALLOWED: Final = "tool_not_allowed"
"""No allow rule matched and the default is deny."""
CODE_ARGUMENT_CONSTRAINT_FAILED: Final = "argument_constraint_failed"
"""An allow rule matched the target and tool, but its argument constraints did not hold."""

MCP_TOOLS_CALL: Final = "tools/call"


@dataclass(frozen=True, slots=True)
class AuthzResult:
    """The outcome of tool authorization for one call.

    ``rule`` names the deciding rule (``None`` when the default decided). ``risk`` is the
    risk weight of the call: for an allowed call the sum over its tool calls of the highest
    weight among the allow rules that matched each; for a denied call the weight of the
    deny rule (the sidecar may charge it, attempts at forbidden tools are risky too).
    """

    allowed: bool
    rule: str | None
    risk: float
    code: str | None
    message: str


# --------------------------------------------------------------------------- compilation


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    name: str
    deny: bool
    kind: RequestKind | None
    methods: frozenset[str] | None
    hosts: re.Pattern[str] | None
    paths: re.Pattern[str] | None
    models: re.Pattern[str] | None
    servers: re.Pattern[str] | None
    tools: re.Pattern[str] | None
    constraints: tuple[ArgumentCheck, ...]
    risk: float
    allowed: AuthzResult
    """The result when this (allow) rule decides: built once, returned as is."""

    @property
    def tool_specific(self) -> bool:
        """The rule names tools or arguments: it speaks about tool calls only."""
        return self.tools is not None or bool(self.constraints)

    def matches_target(self, call: CallView, method: str, path: str, server: str | None) -> bool:
        if self.kind is not None and call.kind is not self.kind:
            return False
        if self.methods is not None and method not in self.methods:
            return False
        if self.hosts is not None and self.hosts.match(call.host) is None:
            return False
        if self.paths is not None and self.paths.match(path) is None:
            return False
        if self.models is not None and (
            call.model is None
            or not any(self.models.match(form) for form in model_forms(call.model))
        ):
            return False
        if self.servers is not None:
            candidates = (server, call.upstream, call.host)
            if not any(c is not None and self.servers.match(c) for c in candidates):
                return False
        return True

    def matches_tool_name(self, name: str | None) -> bool:
        if self.tools is None:
            return True
        return name is not None and self.tools.match(name) is not None

    def failed_constraint(self, arguments: Any) -> ArgumentCheck | None:
        for c in self.constraints:
            if not c.holds(arguments):
                return c
        return None


def _compile_rule(rule: ToolRule) -> _CompiledRule:
    kind = rule.kind
    # MCP matchers only make sense for MCP calls, model matchers for LLM calls: without
    # this, `{action: allow, mcpTools: [search]}` would also allow every LLM call.
    if kind is None and (rule.mcp_tools or rule.mcp_servers or rule.arguments):
        kind = RequestKind.MCP
    elif kind is None and rule.models:
        kind = RequestKind.LLM
    return _CompiledRule(
        name=rule.name,
        deny=rule.action is Action.DENY,
        kind=kind,
        methods=frozenset(m.upper() for m in rule.methods) or None,
        hosts=compile_glob(rule.hosts, ignore_case=True),
        paths=compile_glob(
            rule.paths,
            separator="/",
            ignore_case=rule.action is Action.DENY,
            trailing_separator=rule.action is Action.DENY,
        ),
        models=compile_glob(rule.models, ignore_case=True),
        servers=compile_glob(rule.mcp_servers, ignore_case=True),
        tools=compile_glob(rule.mcp_tools),
        constraints=tuple(compile_argument_check(c) for c in rule.arguments),
        risk=float(rule.risk),
        allowed=AuthzResult(
            True, rule.name, float(rule.risk), None, f"allowed by rule {rule.name!r}"
        ),
    )


# --------------------------------------------------------------------------- authorizer


@dataclass(frozen=True, slots=True)
class _Plan:
    """The rules left for one subject once everything but the arguments is known.

    Either ``fixed`` (the arguments cannot change the verdict) or candidate rules, in policy
    order, whose argument constraints decide.
    """

    fixed: AuthzResult | None
    deny: tuple[_CompiledRule, ...] = ()
    allow: tuple[_CompiledRule, ...] = ()
    fallback: AuthzResult | None = None


_PlanKey = tuple[Any, ...]

PLAN_CACHE_SIZE: Final = 4096
"""Distinct call shapes remembered. When full the cache starts over: the bound keeps an
agent that varies paths from growing memory, the restart costs one rule scan per shape."""


class ToolAuthorizer:
    """Decide calls against compiled ``spec.tools`` rules.

    Build a new one on a policy change: construction compiles every pattern, so an invalid
    one fails there, not on a call. Matching the target (kind, method, host, path, model,
    server, tool name) is memoized per distinct call shape, so a decision costs a dictionary
    lookup plus the argument constraints of the rules still in play.
    """

    __slots__ = ("_allow", "_default_allow", "_deny", "_plans", "query_names")

    def __init__(self, tools: Tools) -> None:
        compiled = [_compile_rule(r) for r in tools.rules]
        self._deny: tuple[_CompiledRule, ...] = tuple(r for r in compiled if r.deny)
        self._allow: tuple[_CompiledRule, ...] = tuple(r for r in compiled if not r.deny)
        self._default_allow = tools.default is Action.ALLOW
        self._plans: dict[_PlanKey, _Plan] = {}
        self.query_names: frozenset[str] = frozenset(
            str(c.steps[1])
            for r in compiled
            if r.kind is RequestKind.HTTP
            for c in r.constraints
            if len(c.steps) >= 2 and c.steps[0] == "query" and isinstance(c.steps[1], str)
        )
        """Query parameters HTTP rules read (``$.query.<name>``): their reading is strict."""

    def authorize(self, call: CallView) -> AuthzResult:
        """Decide one call. Deny wins; a batch is allowed only if every tool call is."""
        if len(call.tool_calls) == 1:
            return self._decide(call, call.tool_calls[0])
        if call.tool_calls:
            total_risk = 0.0
            allowed_rules: list[str] = []
            for tool in call.tool_calls:
                v = self._decide(call, tool)
                if not v.allowed:
                    return AuthzResult(False, v.rule, v.risk, v.code, v.message)
                total_risk += v.risk
                if v.rule is not None and v.rule not in allowed_rules:
                    allowed_rules.append(v.rule)
            if not allowed_rules:
                return AuthzResult(True, None, total_risk, None, "allowed by default")
            rule = ",".join(allowed_rules)
            return AuthzResult(True, rule, total_risk, None, f"allowed by rule {rule!r}")
        return self._decide(call, None)

    def _decide(self, call: CallView, tool: ToolCall | None) -> AuthzResult:
        target = (call.kind, call.method, call.host, call.path, call.model, call.upstream)
        key: _PlanKey
        if tool is None:
            key = (*target, call.mcp_method == MCP_TOOLS_CALL)
        else:
            key = (*target, True, tool.server, tool.name)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(call, tool)
            if len(self._plans) >= PLAN_CACHE_SIZE:
                self._plans.clear()
            self._plans[key] = plan
        if plan.fixed is not None:
            return plan.fixed
        # Only tool calls (and HTTP calls) whose candidate rules carry argument constraints
        # get here.
        if tool is not None:
            arguments = tool.arguments
            what = f"tool {tool.name!r}"
        else:
            arguments = {"query": dict(call.query)}
            what = _describe(call, call.path, None)
        for r in plan.deny:
            if r.failed_constraint(arguments) is None:
                return AuthzResult(
                    False, r.name, r.risk, CODE_TOOL_DENIED, f"{what} denied by rule {r.name!r}"
                )
        best: _CompiledRule | None = None
        failed: tuple[_CompiledRule, ArgumentCheck] | None = None
        for r in plan.allow:
            bad = r.failed_constraint(arguments)
            if bad is not None:
                if failed is None:
                    failed = (r, bad)
            elif best is None or r.risk > best.risk:
                best = r
        if best is not None:
            return best.allowed
        assert plan.fallback is not None
        # An unconditional allow rule (or an allow default) still admits the call when
        # the constrained allow rules do not.
        if failed is not None and not plan.fallback.allowed:
            rule, constraint = failed
            return AuthzResult(
                False,
                rule.name,
                0.0,
                CODE_ARGUMENT_CONSTRAINT_FAILED,
                f"{what}: rule {rule.name!r} requires {constraint.description}",
            )
        return plan.fallback

    def _plan(self, call: CallView, tool: ToolCall | None) -> _Plan:
        """Match everything but the arguments: the slow part, memoized by the caller."""
        path = call.path.partition("?")[0]
        method = call.method.upper()
        server = tool.server if tool is not None else None
        name = tool.name if tool is not None else None
        what = _describe(call, path, name)
        # A plain HTTP call is a tool call whose arguments are its query parameters.
        has_arguments = tool is not None or call.kind is RequestKind.HTTP
        is_tool_call = has_arguments or call.mcp_method == MCP_TOOLS_CALL

        deny: list[_CompiledRule] = []
        for r in self._deny:
            # Deny rules about tools or arguments deny tools, never the server itself.
            if r.tool_specific and not is_tool_call:
                continue
            if not r.matches_target(call, method, path, server):
                continue
            if not r.matches_tool_name(name):
                continue
            if r.constraints and not has_arguments:
                continue
            if not r.constraints:
                verdict = AuthzResult(
                    False, r.name, r.risk, CODE_TOOL_DENIED, f"{what} denied by rule {r.name!r}"
                )
                if not deny:
                    return _Plan(verdict)
                # Constrained deny rules come first in policy order: they may still
                # match (and name themselves); else this one denies.
                return _Plan(None, tuple(deny), (), verdict)
            deny.append(r)

        allow: list[_CompiledRule] = []
        unconditional: _CompiledRule | None = None
        for r in self._allow:
            if not r.matches_target(call, method, path, server):
                continue
            if is_tool_call:
                if not r.matches_tool_name(name):
                    continue
                if r.constraints:
                    if has_arguments:
                        allow.append(r)
                    continue
            # Else an LLM/HTTP call, or an MCP session message (initialize, tools/list, ...),
            # which the target matchers alone admit (it calls no tool: no tool risk, below).
            if unconditional is None or r.risk > unconditional.risk:
                unconditional = r

        if unconditional is not None:
            session_message = call.kind is RequestKind.MCP and not is_tool_call
            allowed = (
                AuthzResult(
                    True, unconditional.name, 0.0, None, f"allowed by rule {unconditional.name!r}"
                )
                if session_message
                else unconditional.allowed
            )
            # A constrained allow rule with a higher weight could still match: keep it.
            allow = [r for r in allow if r.risk > unconditional.risk]
            if not deny and not allow:
                return _Plan(allowed)
            return _Plan(None, tuple(deny), tuple(allow), allowed)
        if self._default_allow:
            fallback = AuthzResult(True, None, 0.0, None, "allowed by default")
        else:
            fallback = AuthzResult(
                False,
                None,
                0.0,
                CODE_TOOL_NOT_ALLOWED,
                f"{what} matches no allow rule (default deny)",
            )
        if not deny and not allow:
            return _Plan(fallback)
        return _Plan(None, tuple(deny), tuple(allow), fallback)

    def filter_tools_list(
        self, server: str, tools: list[dict[str, Any]], call: CallView | None = None
    ) -> list[dict[str, Any]]:
        """Keep the entries of an MCP ``tools/list`` result the agent may call.

        A tool is kept when a ``tools/call`` of it on ``server`` can be allowed: some allow
        rule (or the default) admits its name, and no deny rule denies it regardless of the
        arguments. Argument constraints are unknown at listing time, so a tool allowed only
        with some arguments is listed (its calls are still checked one by one). Pass the
        ``tools/list`` request's ``call`` so host/path/method matchers apply; without it,
        rules are compared on server and tool name only.
        """
        kept: list[dict[str, Any]] = []
        for entry in tools:
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and self._may_call(server, name, call):
                kept.append(entry)
        return kept

    def _may_call(self, server: str, name: str, call: CallView | None) -> bool:
        probe = (
            None
            if call is None
            else CallView(
                kind=call.kind,
                method=call.method,
                scheme=call.scheme,
                host=call.host,
                port=call.port,
                path=call.path,
                upstream=call.upstream,
                model=call.model,
                mcp_method=MCP_TOOLS_CALL,
                agent=call.agent,
            )
        )
        path = probe.path.partition("?")[0] if probe is not None else ""

        def target_ok(r: _CompiledRule) -> bool:
            if probe is None:
                # Without the request only kind and server can be compared.
                if r.kind is not None and r.kind is not RequestKind.MCP:
                    return False
                return r.servers is None or r.servers.match(server) is not None
            return r.matches_target(probe, probe.method.upper(), path, server)

        for r in self._deny:
            if not r.constraints and r.matches_tool_name(name) and target_ok(r):
                return False
        for r in self._allow:
            if r.matches_tool_name(name) and target_ok(r):
                return True
        return self._default_allow


def _describe(call: CallView, path: str, tool: str | None) -> str:
    if tool is not None:
        return f"tool {tool!r}"
    return f"{call.method} {call.host}{path}"


# --------------------------------------------------------------------------- validation


def find_conflicts(tools: Tools) -> list[tuple[int, int, str]]:
    """Pairs of rules that match exactly the same calls with opposite actions.

    Returns ``(allow_index, deny_index, message)`` for each pair: the allow rule can never
    take effect because the deny rule wins. Used by admission validation, where such a pair
    is an error (the author almost certainly meant something else).
    """

    def key(r: ToolRule) -> tuple[Any, ...]:
        return (
            r.kind,
            tuple(sorted(h.lower() for h in r.hosts)),
            tuple(sorted(m.upper() for m in r.methods)),
            tuple(sorted(r.paths)),
            tuple(sorted(r.models)),
            tuple(sorted(s.lower() for s in r.mcp_servers)),
            tuple(sorted(r.mcp_tools)),
            tuple(sorted(c.model_dump_json(by_alias=True) for c in r.arguments)),
        )

    denies: dict[tuple[Any, ...], int] = {}
    for i, r in enumerate(tools.rules):
        if r.action is Action.DENY:
            denies.setdefault(key(r), i)
    out: list[tuple[int, int, str]] = []
    for i, r in enumerate(tools.rules):
        if r.action is Action.ALLOW and (j := denies.get(key(r))) is not None:
            out.append(
                (
                    i,
                    j,
                    f"rule {r.name!r} matches exactly what deny rule "
                    f"{tools.rules[j].name!r} matches: it can never allow anything",
                )
            )
    return out
