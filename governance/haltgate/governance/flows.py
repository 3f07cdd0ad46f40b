"""Information-flow rules (``spec.flows``): untrusted content in, sensitive sinks refused.

A flow rule names untrusted *sources* and sensitive *sinks*, both tool calls (plain HTTP
calls of any method, MCP ``tools/call`` and ``resources/read``; LLM calls are neither).
Once the run has received an answer from a source, the run is *tainted* for that rule, and
a later call to one of its sinks is, by the rule's ``action`` (failure ``SAFETY``):

- ``deny``: refused with ``flow_denied``, whatever its content;
- ``approval``: refused with ``flow_approval_required`` and an approval id until an
  operator approves that exact call (it then passes once);
- ``deny-untrusted-values``: refused with ``flow_untrusted_value`` when one of its
  arguments carries a value that appeared in the untrusted content (an address, a URL, a
  host, a long number, an id, a quoted phrase: :mod:`.flow_values`), naming the argument,
  never the value; other calls go on.

The rule is about where data came from, so an instruction phrased as an ordinary request,
which no detector flags, is stopped as well.

A taint lasts for the run (``scope: run``) or a window of calls (``scope: calls``); the
run's state is a :class:`~haltgate.governance.flow_taint.FlowTaint`, which survives a
restart.

Matching: every matcher an endpoint sets must match (an empty list matches anything);
``anyToolResult`` matches every tool call. Globs are those of ``spec.tools``
(:func:`haltgate.governance.glob_match.compile_glob`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Final

from haltgate.governance.flow_taint import FlowTaint
from haltgate.governance.glob_match import compile_glob
from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.policy_base import RequestKind
from haltgate.governance.policy_rules import FlowEndpoint, FlowRule
from haltgate.governance.request import CallView

__all__ = [
    "APPROVAL_HEADER",
    "CODE_FLOW_APPROVAL_REQUIRED",
    "CODE_FLOW_DENIED",
    "CODE_FLOW_UNTRUSTED_VALUE",
    "FlowPolicy",
    "FlowRefusal",
    "approval_id",
    "describe",
    "flow_problems",
    "flow_warnings",
]

CODE_FLOW_DENIED: Final = "flow_denied"
"""A sink of a flow rule was called after the run took in content from its source."""
CODE_FLOW_APPROVAL_REQUIRED: Final = "flow_approval_required"
"""As ``flow_denied``, for a rule with ``action: approval``: an operator may approve the
call (its approval id), after which the identical call passes once."""
CODE_FLOW_UNTRUSTED_VALUE: Final = "flow_untrusted_value"
"""A sink call of a rule with ``action: deny-untrusted-values`` carried a value that an
untrusted answer of the run carried (or the run's values are unknown: fail closed)."""
APPROVAL_HEADER: Final = "x-haltgate-approval"
"""Response header of a ``flow_approval_required`` refusal: the call's approval id."""

_MCP_SOURCE_METHODS: Final = frozenset({"tools/call", "resources/read"})
DENY_UNTRUSTED_VALUES: Final = "deny-untrusted-values"


@dataclass(frozen=True, slots=True)
class _Endpoint:
    any_tool_result: bool
    kind: RequestKind | None
    upstreams: re.Pattern[str] | None
    hosts: re.Pattern[str] | None
    methods: frozenset[str] | None
    paths: re.Pattern[str] | None
    servers: re.Pattern[str] | None
    tools: re.Pattern[str] | None

    @classmethod
    def compile(cls, spec: FlowEndpoint) -> _Endpoint:
        return cls(
            any_tool_result=spec.any_tool_result,
            kind=RequestKind(spec.kind) if spec.kind is not None else None,
            upstreams=compile_glob(spec.upstreams),
            hosts=compile_glob(spec.hosts, ignore_case=True),
            methods=frozenset(m.upper() for m in spec.methods) or None,
            paths=compile_glob(spec.paths, separator="/"),
            servers=compile_glob(spec.mcp_servers),
            tools=compile_glob(spec.mcp_tools),
        )

    def matches(self, view: CallView) -> bool:
        """Whether the endpoint matches ``view``, already known to be a tool call."""
        if self.any_tool_result:
            return True
        if self.kind is not None and view.kind is not self.kind:
            return False
        if self.upstreams is not None and not _any(self.upstreams, [view.upstream]):
            return False
        if self.hosts is not None and not _any(self.hosts, [view.host]):
            return False
        if self.methods is not None and view.method.upper() not in self.methods:
            return False
        if self.paths is not None and not _any(self.paths, [view.path]):
            return False
        if self.servers is not None:
            names = [view.upstream, view.host, *(t.server for t in view.tool_calls)]
            if view.kind is not RequestKind.MCP or not _any(self.servers, names):
                return False
        if self.tools is not None:
            if not _any(self.tools, [t.name for t in view.tool_calls]):
                return False
        return True


def _any(pattern: re.Pattern[str], values: Iterable[str | None]) -> bool:
    return any(v is not None and pattern.match(v) is not None for v in values)


def _is_tool_call(view: CallView, *, source: bool) -> bool:
    """HTTP calls and MCP tool calls (and resource reads, for sources) only."""
    if view.kind is RequestKind.HTTP:
        return True
    if view.kind is not RequestKind.MCP:
        return False
    methods = {m for m, _, _ in view.mcp_messages} | {view.mcp_method}
    wanted = _MCP_SOURCE_METHODS if source else frozenset({"tools/call"})
    return bool(methods & wanted)


def describe(view: CallView) -> str:
    """A short name of a call for refusals and the taint record: no path, query or
    arguments (they may carry secrets), only the kind, method, upstream/host and tool."""
    where = view.upstream or view.host
    if view.kind is RequestKind.MCP:
        tools = ",".join(t.name for t in view.tool_calls[:3])
        return f"mcp {where}" + (f" tool {tools}" if tools else f" {view.mcp_method or ''}")
    return f"{view.method.upper()} {where}"


def approval_id(run_id: str, view: CallView, fingerprint: str) -> str:
    """The id an operator approves: one exact call (target and content) of one run."""
    digest = hashlib.sha256(f"{run_id}\n{describe(view)}\n{fingerprint}".encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class FlowRefusal:
    """Why a sink call is refused: the rule, the source that tainted the run, the sink;
    ``approval``: the call's approval id when the rule lets an operator approve it;
    ``argument``: the path of the argument that carried an untrusted value (never the
    value); ``unknown``: why the run's values are unknown (both for
    ``deny-untrusted-values`` rules only)."""

    rule: str
    source: str
    sink: str
    approval: str | None = None
    argument: str | None = None
    unknown: str | None = None
    approved_by: str | None = None
    """The operator who approved the call (when it passes on an approval)."""

    @property
    def code(self) -> str:
        if self.argument is not None or self.unknown is not None:
            return CODE_FLOW_UNTRUSTED_VALUE
        return CODE_FLOW_DENIED if self.approval is None else CODE_FLOW_APPROVAL_REQUIRED

    @property
    def message(self) -> str:
        head = f"flow rule {self.rule!r}: this run took in content from {self.source}, so "
        if self.argument is not None:
            return head + (
                f"this call to {self.sink} is refused: its argument {self.argument} carries "
                "a value that appeared in that content"
            )
        if self.unknown is not None:
            return head + (
                f"calls to {self.sink} are refused until an operator reset: {self.unknown}, "
                "so the values it carried are unknown"
            )
        if self.approval is None:
            return head + f"calls to {self.sink} are refused until an operator reset"
        return head + (
            f"this call to {self.sink} needs an operator's approval (approval id {self.approval})"
        )

    def audit(self, result: str = "deny") -> dict[str, Any]:
        """The ``flows`` stage of the call's audit record: rule, source, sink, code and
        the argument path or approval id (no payload: names only)."""
        doc: dict[str, Any] = {
            "stage": "flows",
            "rule": self.rule,
            "source": self.source,
            "sink": self.sink,
            "result": result,
        }
        if result == "deny":
            doc["code"] = self.code
        for key in ("approval", "argument", "unknown", "approved_by"):
            if (value := getattr(self, key)) is not None:
                doc[key] = value
        return doc


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    sources: tuple[_Endpoint, ...]
    sinks: tuple[_Endpoint, ...]
    action: str
    window: int | None


class FlowPolicy:
    """The compiled ``spec.flows`` rules (built once per policy)."""

    def __init__(self, rules: Iterable[FlowRule]) -> None:
        self.rules = tuple(
            _Rule(
                r.name,
                tuple(_Endpoint.compile(s) for s in r.sources),
                tuple(_Endpoint.compile(s) for s in r.sinks),
                r.action,
                r.window_calls if r.scope == "calls" else None,
            )
            for r in rules
        )
        self.value_rules = frozenset(
            r.name for r in self.rules if r.action == DENY_UNTRUSTED_VALUES
        )
        """Rules whose sources' answers are read for values."""

    def __bool__(self) -> bool:
        return bool(self.rules)

    def sources_hit(self, view: CallView) -> list[str]:
        """Names of the rules this call is an untrusted source of."""
        if not _is_tool_call(view, source=True):
            return []
        return [r.name for r in self.rules if any(s.matches(view) for s in r.sources)]

    def check(
        self,
        view: CallView,
        taint: FlowTaint,
        fingerprint: Callable[[], str] = lambda: "",
        arguments: Callable[[], Iterable[tuple[str, str]]] = lambda: (),
    ) -> tuple[FlowRefusal | None, FlowRefusal | None]:
        """``(refusal, approved)`` for a call: the refusal of a sink call of a tainted run
        (``None``: the call may go), and the approval it used, if any (for the audit).

        ``deny`` and ``deny-untrusted-values`` rules refuse first; else an ``approval``
        rule refuses with the call's approval id unless an operator approved it (the
        approval is then used up). ``fingerprint``: the call's identity (target and
        content), asked only when an approval rule applies; ``arguments``: the call's
        ``(argument path, value)`` pairs, asked only when a values rule applies."""
        pending: FlowRefusal | None = None
        sink_kind: bool | None = None
        candidates: list[tuple[str, str]] | None = None
        for rule in self.rules:
            source = taint.source_of(rule.name, rule.window)
            if source is None:
                continue
            if sink_kind is None:
                sink_kind = _is_tool_call(view, source=False)
            if not sink_kind or not any(s.matches(view) for s in rule.sinks):
                continue
            if rule.action == "deny":
                return FlowRefusal(rule.name, source, describe(view)), None
            if rule.action == DENY_UNTRUSTED_VALUES:
                unknown = taint.values_unknown(rule.name)
                if unknown is not None:
                    return FlowRefusal(rule.name, source, describe(view), unknown=unknown), None
                if candidates is None:
                    candidates = list(arguments())
                argument = taint.carried(rule.name, candidates)
                if argument is not None:
                    return FlowRefusal(rule.name, source, describe(view), argument=argument), None
                continue
            if pending is None:
                pending = FlowRefusal(
                    rule.name,
                    source,
                    describe(view),
                    approval_id(taint.run_id or "", view, fingerprint()),
                )
        if pending is not None and pending.approval is not None:
            actor = taint.use_approval(pending.approval)
            if actor is not None:
                return None, replace(pending, approved_by=actor)
            taint.ask_approval(pending.approval)
        return pending, None


def flow_problems(spec: GovernancePolicySpec) -> list[tuple[str, str]]:
    """``(field path, message)`` of every ``spec.flows`` problem the schema cannot see."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, rule in enumerate(spec.flows):
        p = f"spec.flows[{i}]"
        if rule.name in seen:
            out.append((f"{p}.name", f"duplicate flow rule name {rule.name!r}"))
        seen.add(rule.name)
        if rule.scope == "calls" and rule.window_calls is None:
            out.append((f"{p}.windowCalls", "required when scope is 'calls'"))
        if rule.scope == "run" and rule.window_calls is not None:
            out.append((f"{p}.windowCalls", "only valid when scope is 'calls'"))
        for part, endpoints in (("sources", rule.sources), ("sinks", rule.sinks)):
            for j, e in enumerate(endpoints):
                out.extend(_endpoint_problems(f"{p}.{part}[{j}]", e, sink=part == "sinks"))
    return out


def flow_warnings(spec: GovernancePolicySpec) -> list[tuple[str, str]]:
    """``(field path, message)`` of ``spec.flows`` settings that are valid but likely
    not what the author meant (admission warnings)."""
    out: list[tuple[str, str]] = []
    for i, rule in enumerate(spec.flows):
        if rule.action != DENY_UNTRUSTED_VALUES:
            continue
        for j, source in enumerate(rule.sources):
            if source.any_tool_result:
                out.append(
                    (
                        f"spec.flows[{i}].sources[{j}].anyToolResult",
                        "with action deny-untrusted-values every tool answer adds values, "
                        "the sinks' own answers too (a send whose answer echoes its "
                        "recipient closes that recipient); name the untrusted sources",
                    )
                )
    return out


def _endpoint_problems(p: str, e: FlowEndpoint, *, sink: bool) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    matchers = [
        n
        for n, v in (
            ("kind", e.kind),
            ("upstreams", e.upstreams),
            ("hosts", e.hosts),
            ("methods", e.methods),
            ("paths", e.paths),
            ("mcpServers", e.mcp_servers),
            ("mcpTools", e.mcp_tools),
        )
        if v
    ]
    if e.any_tool_result:
        if sink:
            out.append((f"{p}.anyToolResult", "only valid in sources"))
        elif matchers:
            out.append(
                (f"{p}.anyToolResult", f"matches every tool result: remove {', '.join(matchers)}")
            )
    elif not matchers:
        out.append(
            (
                p,
                "set at least one of kind, upstreams, hosts, methods, paths, "
                "mcpServers, mcpTools" + ("" if sink else ", anyToolResult"),
            )
        )
    if e.kind == "mcp" and (e.methods or e.paths):
        out.append((f"{p}.{'methods' if e.methods else 'paths'}", "only valid for http endpoints"))
    if e.kind == "http" and (e.mcp_servers or e.mcp_tools):
        out.append(
            (f"{p}.{'mcpTools' if e.mcp_tools else 'mcpServers'}", "only valid for mcp endpoints")
        )
    for k, m in enumerate(e.methods):
        if not re.fullmatch(r"[A-Za-z]+", m):
            out.append((f"{p}.methods[{k}]", f"not an HTTP method: {m!r}"))
    return out
