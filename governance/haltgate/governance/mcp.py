"""MCP governed whole: the method catalogue, resource URIs, and the ``spec.mcp`` rules.

The sidecar reads every JSON-RPC message of an MCP request (a batch is many) and decides on
each one. This module holds what that decision needs and that knows no server:

- :data:`CLIENT_METHODS`: the methods an agent (the MCP client) may send, each with its
  :class:`MethodClass`. Names are compared exactly (``Tools/Call`` is not ``tools/call``); a
  method outside the catalogue is refused, never passed through unread.
- :func:`canonical_uri`: the one reading of a resource URI that rules are matched against;
  URIs that an upstream could read differently (dot segments, encoded separators, encoded
  unreserved characters) are refused.
- :class:`McpAuthorizer`: ``spec.mcp`` compiled: resource rules (URI globs), prompt rules
  (name globs), sampling and elicitation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from haltgate.governance.glob_match import compile_glob
from haltgate.governance.policy_base import Action
from haltgate.governance.policy_rules import Mcp, McpPromptRule, McpResourceRule
from haltgate.governance.tools import AuthzResult

__all__ = [
    "CLIENT_METHODS",
    "CLIENT_NOTIFICATIONS",
    "CODE_PROMPT_DENIED",
    "CODE_PROMPT_NOT_ALLOWED",
    "CODE_RESOURCE_DENIED",
    "CODE_RESOURCE_NOT_ALLOWED",
    "McpAuthorizer",
    "MethodClass",
    "canonical_uri",
    "strip_client_capabilities",
    "template_prefix",
    "uri_glob_problem",
]

CODE_RESOURCE_DENIED: Final = "resource_denied"
CODE_RESOURCE_NOT_ALLOWED: Final = "resource_not_allowed"
CODE_PROMPT_DENIED: Final = "prompt_denied"
CODE_PROMPT_NOT_ALLOWED: Final = "prompt_not_allowed"


class MethodClass(StrEnum):
    """What an MCP message does, which decides which rules apply and what it costs."""

    SESSION = "session"
    """Protocol and session plumbing (initialize, ping, notifications, logging level,
    unsubscribe): allowed by the server's tool rules, never uses the calls budget."""
    LISTING = "listing"
    """Discovery (tools/list, resources/list, prompts/list): no budget; listings of
    resources and prompts need an allowing ``spec.mcp`` section."""
    TOOL = "tool"
    """tools/call: tool rules, one call each."""
    RESOURCE = "resource"
    """resources/read, resources/subscribe: ``spec.mcp.resources``, one call each."""
    PROMPT = "prompt"
    """prompts/get: ``spec.mcp.prompts``, one call each."""
    COMPLETION = "completion"
    """completion/complete: the rules of the prompt or resource it completes, one call."""
    RESPONSE = "response"
    """The agent's answer to a server request (no method): no budget."""


CLIENT_METHODS: Final[dict[str, MethodClass]] = {
    "initialize": MethodClass.SESSION,
    "ping": MethodClass.SESSION,
    "logging/setLevel": MethodClass.SESSION,
    "resources/unsubscribe": MethodClass.SESSION,
    "tools/list": MethodClass.LISTING,
    "resources/list": MethodClass.LISTING,
    "resources/templates/list": MethodClass.LISTING,
    "prompts/list": MethodClass.LISTING,
    "tools/call": MethodClass.TOOL,
    "resources/read": MethodClass.RESOURCE,
    "resources/subscribe": MethodClass.RESOURCE,
    "prompts/get": MethodClass.PROMPT,
    "completion/complete": MethodClass.COMPLETION,
}
"""Requests an MCP client sends (protocol revision 2025-06-18), by exact name."""

CLIENT_NOTIFICATIONS: Final = frozenset(
    {
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/roots/list_changed",
    }
)
"""Notifications an MCP client sends, by exact name (all SESSION)."""

SERVER_REQUESTS: Final[dict[str, str]] = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
}
"""Requests a server sends to the agent that ``spec.mcp`` governs, and the governing field."""

# --------------------------------------------------------------------------- URIs

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_FORBIDDEN_ESCAPES = frozenset({"2F", "5C", "00"})
MAX_URI_CHARS: Final = 4096
_NO_SCHEME: Final = "the URI has no scheme"


def canonical_uri(uri: str) -> str:
    """The reading of a resource URI that rules match: scheme and authority lower-cased.

    Raises :class:`ValueError` naming what is ambiguous: an upstream could resolve the URI
    to another resource than the one it names (``..`` and ``.`` segments, empty segments
    inside the path, backslashes, control characters, escapes of ``/``, ``\\`` or NUL, and
    escapes of unreserved characters, which an honest client never sends: RFC 3986, 2.3).
    """
    if not uri:
        raise ValueError("the URI is empty")
    if len(uri) > MAX_URI_CHARS:
        raise ValueError(f"the URI is longer than {MAX_URI_CHARS} characters")
    for ch in uri:
        if ch < " " or ch == "\x7f" or ch == "\\":
            raise ValueError("the URI contains a control character or a backslash")
    i = uri.find("%")
    while i >= 0:
        pair = uri[i + 1 : i + 3].upper()
        if len(pair) != 2 or any(c not in "0123456789ABCDEF" for c in pair):
            raise ValueError("the URI contains a malformed percent escape")
        if pair in _FORBIDDEN_ESCAPES:
            raise ValueError(f"the URI contains an encoded separator or NUL (%{pair})")
        if int(pair, 16) in _UNRESERVED:
            raise ValueError(f"the URI percent-encodes an unreserved character (%{pair})")
        i = uri.find("%", i + 3)
    m = _SCHEME.match(uri)
    if m is None:
        raise ValueError(_NO_SCHEME)
    scheme = m.group(0).lower()
    rest = uri[m.end() :]
    authority = ""
    if rest.startswith("//"):
        end = len(rest)
        for sep in "/?#":
            j = rest.find(sep, 2)
            if j >= 0:
                end = min(end, j)
        authority = "//" + rest[2:end].lower()
        rest = rest[end:]
    path = rest
    for sep in "?#":
        j = path.find(sep)
        if j >= 0:
            path = path[:j]
    segments = path.split("/")
    for k, segment in enumerate(segments):
        if segment in (".", "..") or segment.upper() in ("%2E", "%2E%2E", ".%2E", "%2E."):
            raise ValueError("the URI has a dot segment")
        if not segment and 0 < k < len(segments) - 1:
            raise ValueError("the URI has an empty path segment")
    return scheme + authority + rest


def uri_glob_problem(glob: str) -> str | None:
    """Why a resource URI glob can never match a canonical URI (``None``: it can)."""
    probe = glob.replace("**", "x").replace("*", "x").replace("?", "x")
    try:
        canonical_uri(probe)
    except ValueError as e:
        if str(e) == _NO_SCHEME:
            return None  # e.g. "**": any URI
        return f"never matches: resource URIs are matched in canonical form, and {e}"
    return None


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    deny: bool
    servers: re.Pattern[str] | None
    subjects: re.Pattern[str] | None
    risk: float
    globs: tuple[str, ...] = ()
    """The subject globs as written (empty: any subject)."""

    def matches_server(self, servers: Sequence[str | None]) -> bool:
        return self.servers is None or any(
            s is not None and self.servers.match(s) is not None for s in servers
        )

    def matches(self, servers: Sequence[str | None], subject: str) -> bool:
        return self.matches_server(servers) and (
            self.subjects is None or self.subjects.match(subject) is not None
        )


def _compile(rules: Iterable[McpResourceRule | McpPromptRule]) -> tuple[_Rule, ...]:
    out = []
    for r in rules:
        if isinstance(r, McpResourceRule):
            globs = tuple(r.uris)
            subjects = compile_glob(globs, separator="/")
        else:
            globs = tuple(r.prompts)
            subjects = compile_glob(globs)
        out.append(
            _Rule(
                r.name,
                r.action is Action.DENY,
                compile_glob(r.mcp_servers, ignore_case=True),
                subjects,
                float(r.risk),
                globs,
            )
        )
    return tuple(out)


class _Section:
    """One allow-listed section (resources or prompts): deny wins, then allow, then default."""

    __slots__ = ("_allow", "_default_allow", "_denied", "_deny", "_not_allowed", "_noun")

    def __init__(
        self,
        rules: Iterable[McpResourceRule | McpPromptRule],
        default: Action,
        noun: str,
        denied: str,
        not_allowed: str,
    ) -> None:
        compiled = _compile(rules)
        self._deny = tuple(r for r in compiled if r.deny)
        self._allow = tuple(r for r in compiled if not r.deny)
        self._default_allow = default is Action.ALLOW
        self._noun = noun
        self._denied = denied
        self._not_allowed = not_allowed

    def decide(self, servers: Sequence[str | None], subject: str) -> AuthzResult:
        for r in self._deny:
            if r.matches(servers, subject):
                return AuthzResult(
                    False,
                    r.name,
                    r.risk,
                    self._denied,
                    f"{self._noun} {subject[:256]!r} denied by rule {r.name!r}",
                )
        best: _Rule | None = None
        for r in self._allow:
            if r.matches(servers, subject) and (best is None or r.risk > best.risk):
                best = r
        if best is not None:
            return AuthzResult(True, best.name, best.risk, None, f"allowed by rule {best.name!r}")
        if self._default_allow:
            return AuthzResult(True, None, 0.0, None, "allowed by default")
        return AuthzResult(
            False,
            None,
            0.0,
            self._not_allowed,
            f"{self._noun} {subject[:256]!r} matches no allow rule (default deny)",
        )

    def allows_every(self, servers: Sequence[str | None], prefix: str) -> bool:
        """Whether every subject that starts with ``prefix`` is allowed (a resource
        template's expansions: ``prefix`` is its fixed part). Conservative: a deny rule
        whose glob could match some such subject (its literal start and ``prefix`` agree)
        or that has no glob rules it out; an allow rule covers it only with no glob or a
        glob ``<literal>**`` that ``prefix`` starts with."""
        for r in self._deny:
            if not r.matches_server(servers):
                continue
            if not r.globs:
                return False
            for glob in r.globs:
                fixed = _literal_start(glob)
                if fixed.startswith(prefix) or prefix.startswith(fixed):
                    return False
        if self._default_allow:
            return True
        for r in self._allow:
            if not r.matches_server(servers):
                continue
            if not r.globs:
                return True
            for glob in r.globs:
                head = glob[:-2]
                if glob.endswith("**") and _literal_start(head) == head and prefix.startswith(head):
                    return True
        return False

    def lists(self, servers: Sequence[str | None], method: str) -> AuthzResult:
        """A listing is allowed when something of this server could be allowed."""
        if self._default_allow or any(r.matches_server(servers) for r in self._allow):
            return AuthzResult(True, None, 0.0, None, "listing allowed")
        return AuthzResult(
            False,
            None,
            0.0,
            self._not_allowed,
            f"{method}: no {self._noun} of this server is allowed (default deny)",
        )


def _literal_start(glob: str) -> str:
    """The part of ``glob`` before its first wildcard."""
    end = len(glob)
    for wildcard in "*?":
        at = glob.find(wildcard)
        if at != -1:
            end = min(end, at)
    return glob[:end]


def template_prefix(template: str) -> str:
    """The fixed start of a URI template (RFC 6570: up to its first expression) in
    canonical form; raises :class:`ValueError` when that start has no single reading
    (then no expansion of it could be read either)."""
    fixed = template.partition("{")[0]
    return canonical_uri(fixed) if fixed else ""


class McpAuthorizer:
    """``spec.mcp`` compiled once per policy; decides one MCP message at a time."""

    __slots__ = ("elicitation", "prompts", "resources", "sampling")

    def __init__(self, mcp: Mcp) -> None:
        self.resources = _Section(
            mcp.resources.rules,
            mcp.resources.default,
            "resource",
            CODE_RESOURCE_DENIED,
            CODE_RESOURCE_NOT_ALLOWED,
        )
        self.prompts = _Section(
            mcp.prompts.rules,
            mcp.prompts.default,
            "prompt",
            CODE_PROMPT_DENIED,
            CODE_PROMPT_NOT_ALLOWED,
        )
        self.sampling = mcp.sampling is Action.ALLOW
        """Servers may ask the agent's model for completions."""
        self.elicitation = mcp.elicitation is Action.ALLOW
        """Servers may ask the agent for input."""

    def server_request_allowed(self, method: str) -> bool:
        """Whether a request a server sends to the agent may reach it."""
        field = SERVER_REQUESTS.get(method)
        if field is None:
            return True  # roots/list, ping: plumbing the agent answers itself
        return bool(getattr(self, field))


def strip_client_capabilities(params: Any, *, sampling: bool, elicitation: bool) -> Any | None:
    """``initialize`` params without the capabilities the policy denies (``None``: unchanged).

    A server only sends sampling or elicitation requests to a client that declared them:
    removing the declaration is the first line; dropping such requests from answers is the
    second (for servers that ignore it)."""
    if not isinstance(params, dict):
        return None
    caps = params.get("capabilities")
    if not isinstance(caps, dict):
        return None
    drop = [
        k
        for k, allowed in (("sampling", sampling), ("elicitation", elicitation))
        if not allowed and k in caps
    ]
    if not drop:
        return None
    return {**params, "capabilities": {k: v for k, v in caps.items() if k not in drop}}
