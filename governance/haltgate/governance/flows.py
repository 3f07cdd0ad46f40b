"""Information-flow rules (``spec.flows``): untrusted content in, sensitive sinks refused.

A flow rule names untrusted *sources* and sensitive *sinks*, both tool calls (plain HTTP
calls of any method, MCP ``tools/call`` and ``resources/read``; LLM calls are neither).
Once the run has received an answer from a source, the run is *tainted* for that rule, and
every later call to one of its sinks is refused with ``flow_denied`` (failure ``SAFETY``),
whatever its content: the rule is about where data came from, so an instruction phrased as
an ordinary request, which no detector flags, is stopped as well.

A taint lasts for the run (``scope: run``): an operator reset starts a new run id, and a
:class:`FlowTaint` bound to another run id forgets what it held. With a state file the
taint survives a sidecar restart (written atomically when a rule is first tainted, which
happens at most once per rule and run).

Matching: every matcher an endpoint sets must match (an empty list matches anything);
``anyToolResult`` matches every tool call. Globs are those of ``spec.tools``
(:func:`haltgate.governance.glob_match.compile_glob`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from haltgate.governance.glob_match import compile_glob
from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.policy_base import RequestKind
from haltgate.governance.policy_rules import FlowEndpoint, FlowRule
from haltgate.governance.request import CallView

__all__ = [
    "APPROVAL_HEADER",
    "CODE_FLOW_APPROVAL_REQUIRED",
    "CODE_FLOW_DENIED",
    "FlowPolicy",
    "FlowRefusal",
    "FlowTaint",
    "approval_id",
    "describe",
    "flow_problems",
]

log = logging.getLogger(__name__)

CODE_FLOW_DENIED: Final = "flow_denied"
"""A sink of a flow rule was called after the run took in content from its source."""
CODE_FLOW_APPROVAL_REQUIRED: Final = "flow_approval_required"
"""As ``flow_denied``, for a rule with ``action: approval``: an operator may approve the
call (its approval id), after which the identical call passes once."""
APPROVAL_HEADER: Final = "x-haltgate-approval"
"""Response header of a ``flow_approval_required`` refusal: the call's approval id."""

_MCP_SOURCE_METHODS: Final = frozenset({"tools/call", "resources/read"})
_TAINT_VERSION: Final = 1
_MAX_PENDING: Final = 256
"""Approval ids kept waiting per run (a bound on the state file; past it, refusals still
name their id but it cannot be approved until a reset)."""
_UNREADABLE: Final = "an unknown source (the saved flow taint could not be read)"


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
    ``approval``: the call's approval id when the rule lets an operator approve it."""

    rule: str
    source: str
    sink: str
    approval: str | None = None

    @property
    def code(self) -> str:
        return CODE_FLOW_DENIED if self.approval is None else CODE_FLOW_APPROVAL_REQUIRED

    @property
    def message(self) -> str:
        head = f"flow rule {self.rule!r}: this run took in content from {self.source}, so "
        if self.approval is None:
            return head + f"calls to {self.sink} are refused until an operator reset"
        return head + (
            f"this call to {self.sink} needs an operator's approval (approval id {self.approval})"
        )


class FlowPolicy:
    """The compiled ``spec.flows`` rules (built once per policy)."""

    def __init__(self, rules: Iterable[FlowRule]) -> None:
        self.rules = tuple(
            (
                r.name,
                tuple(_Endpoint.compile(s) for s in r.sources),
                tuple(_Endpoint.compile(s) for s in r.sinks),
                r.action == "approval",
                r.window_calls if r.scope == "calls" else None,
            )
            for r in rules
        )

    def __bool__(self) -> bool:
        return bool(self.rules)

    def sources_hit(self, view: CallView) -> list[str]:
        """Names of the rules this call is an untrusted source of."""
        if not _is_tool_call(view, source=True):
            return []
        return [
            name for name, sources, _, _, _ in self.rules if any(s.matches(view) for s in sources)
        ]

    def check(
        self, view: CallView, taint: FlowTaint, fingerprint: Callable[[], str] = lambda: ""
    ) -> FlowRefusal | None:
        """The refusal of a sink call of a tainted run (``None``: the call may go).

        A ``deny`` rule refuses first; else an ``approval`` rule refuses with the call's
        approval id unless an operator approved it (the approval is then used up).
        ``fingerprint``: the call's identity (target and content), asked only when an
        approval rule applies."""
        pending: FlowRefusal | None = None
        sink_kind: bool | None = None
        for name, _, sinks, approval, window in self.rules:
            source = taint.source_of(name, window)
            if source is None:
                continue
            if sink_kind is None:
                sink_kind = _is_tool_call(view, source=False)
            if not sink_kind or not any(s.matches(view) for s in sinks):
                continue
            if not approval:
                return FlowRefusal(name, source, describe(view))
            if pending is None:
                pending = FlowRefusal(
                    name,
                    source,
                    describe(view),
                    approval_id(taint.run_id or "", view, fingerprint()),
                )
        if pending is not None and pending.approval is not None:
            if taint.use_approval(pending.approval):
                return None
            taint.ask_approval(pending.approval)
        return pending


class FlowTaint:
    """Which flow rules the current run is tainted for, and by what source.

    Bound to a run id: asked about another run (after a reset), it starts empty. With a
    ``path`` it is kept in a JSON file (written atomically) and read back at start."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.run_id: str | None = None
        self.sources: dict[str, str] = {}
        self.calls = 0
        """Governed calls of this run seen by :meth:`tick` (windows count them)."""
        self.tainted_at: dict[str, int] = {}
        """Per rule, ``calls`` when its source last answered (``scope: calls``)."""
        self.pending: set[str] = set()
        """Approval ids refused and waiting for an operator (this run)."""
        self.approved: set[str] = set()
        """Approval ids an operator approved and the agent has not used yet."""
        self.unreadable = False
        """The state file could not be read: the run counts as tainted for every rule
        until an operator reset starts a new run."""
        if path is not None:
            self._load(path)

    def bind(self, run_id: str) -> None:
        """Follow the current run: a new run id clears the taint (scope: run)."""
        if run_id == self.run_id:
            return
        if self.run_id is None and self.unreadable:
            self.run_id = run_id  # the run the unreadable file belonged to: still tainted
            return
        had = bool(self.sources or self.pending or self.approved) or self.unreadable
        self.run_id = run_id
        self.sources, self.tainted_at, self.calls = {}, {}, 0
        self.pending, self.approved = set(), set()
        self.unreadable = False
        if had:
            log.info("flow taint cleared: new run %s", run_id)
            self._save()

    def tick(self) -> None:
        """One more governed call in this run (in memory: a restart resumes from the last
        taint, so windows only get longer)."""
        self.calls += 1

    def source_of(self, rule: str, window: int | None = None) -> str | None:
        """The source that tainted the run for ``rule`` (``None``: not tainted, or its
        window of ``window`` calls after the last untrusted answer has passed)."""
        if self.unreadable:  # fail closed: every rule counts as tainted
            return self.sources.get(rule, _UNREADABLE)
        source = self.sources.get(rule)
        if (
            source is not None
            and window is not None
            and self.calls - self.tainted_at.get(rule, self.calls) > window
        ):
            return None
        return source

    def taint(self, rules: Iterable[str], source: str) -> bool:
        """Record that the run took in content from ``source`` (the first source per rule
        is named; a window restarts). True when something changed."""
        changed = False
        for rule in rules:
            if rule not in self.sources:
                self.sources[rule] = source
                changed = True
            if self.tainted_at.get(rule) != self.calls:
                self.tainted_at[rule] = self.calls
                changed = True
        if changed:
            self._save()
        return changed

    def ask_approval(self, approval: str) -> None:
        """Remember a refused call's approval id (only those can be approved)."""
        if approval not in self.pending and len(self.pending) < _MAX_PENDING:
            self.pending.add(approval)
            self._save()

    def approve(self, approval: str) -> bool:
        """An operator approves one refused call; False: no such pending approval."""
        if approval not in self.pending:
            return False
        self.pending.discard(approval)
        self.approved.add(approval)
        self._save()
        return True

    def use_approval(self, approval: str) -> bool:
        """Let an approved call pass, once."""
        if approval not in self.approved:
            return False
        self.approved.discard(approval)
        self._save()
        return True

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": _TAINT_VERSION,
            "run_id": self.run_id,
            "sources": dict(self.sources),
            "tainted_at": dict(self.tainted_at),
            "pending": sorted(self.pending),
            "approved": sorted(self.approved),
        }

    def _load(self, path: Path) -> None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            doc = None
            log.error(
                "flow taint file %s unreadable (%s): the run counts as tainted for "
                "every flow rule until an operator reset",
                path,
                e,
            )
        if (
            isinstance(doc, dict)
            and doc.get("version") == _TAINT_VERSION
            and isinstance(doc.get("sources"), dict)
            and isinstance(doc.get("run_id"), str)
        ):
            self.run_id = doc["run_id"]
            self.sources = {str(k): str(v) for k, v in doc["sources"].items()}
            at = doc.get("tainted_at")
            self.tainted_at = (
                {str(k): int(v) for k, v in at.items() if isinstance(v, int)}
                if isinstance(at, dict)
                else {}
            )
            self.calls = max(self.tainted_at.values(), default=0)
            self.pending = {str(a) for a in doc.get("pending") or ()}
            self.approved = {str(a) for a in doc.get("approved") or ()}
        else:
            if doc is not None:
                log.error(
                    "flow taint file %s malformed: the run counts as tainted for "
                    "every flow rule until an operator reset",
                    path,
                )
            self.unreadable = True

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            data = json.dumps(self.snapshot(), sort_keys=True).encode()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as e:  # the taint still holds in memory for this process
            log.error("cannot save the flow taint to %s: %s", self.path, e)


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
