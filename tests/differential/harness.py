"""The differential test bed: one sidecar in front of three upstreams that read differently.

- ``go``: the strict Go upstream (``testbed/goupstream``: net/http + encoding/json);
- ``py``: the Python reader stand-in (aiohttp + orjson: exact keys, last duplicate wins);
- ``pyfirst``: the same with a first-wins JSON reading (many other parsers).

Every upstream listens on three ports, one per kind, and is reachable through the sidecar
under three aliases: ``<name>-llm`` (OpenAI-compatible, base path ``/openai``),
``<name>-mcp`` (``/mcp``) and ``<name>-api`` (a plain HTTP tool). A request goes either to
the alias (``/go-api/...``) or, with ``proxy=True``, in absolute form to the upstream's own
address (``http://127.0.0.1:<port>/...``, the sidecar as ``HTTP_PROXY``), so both ways of
resolving a target are driven. The sidecar is the real ``haltgate sidecar`` process
with its audit spool; the upstreams log what they executed, one JSON line per request.

:meth:`Bed.send` sends one request (raw request target, headers and body bytes, exactly
as given) and returns an :class:`Exchange`: the sidecar's answer, its decision as the
audit spool holds it (the ``intent`` record is written before anything is forwarded, so
its absence means the call was refused) and what the upstream executed.
:func:`divergences` compares the two.
"""

from __future__ import annotations

import http.client
import json
import os
import posixpath
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_to_bytes, urlsplit

import yaml

from haltgate.governance.audit.spool import iter_frames, list_segments, segment_path
from haltgate.governance.mcp import McpAuthorizer
from haltgate.governance.policy import GovernancePolicy
from haltgate.governance.policy_base import RequestKind
from haltgate.governance.request import CallView, ToolCall
from haltgate.governance.tools import AuthzResult, ToolAuthorizer
from haltgate.testbed import binaries
from haltgate.testbed.process import ManagedProcess, free_ports, port_open, wait_until
from haltgate.testbed.standins.reader import TAG_HEADER, resolve_model

UPSTREAMS = ("go", "py", "pyfirst")
"""The upstream readers, in the order tests run them."""
KINDS = {"llm": RequestKind.LLM, "mcp": RequestKind.MCP, "api": RequestKind.HTTP}
BASE_PATHS = {"llm": "/openai", "mcp": "/mcp", "api": ""}
START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0


def policy_document(
    ports: Mapping[str, Mapping[str, int]],
    tools: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The sidecar's policy: every upstream under each kind; rules the corpus aims at.

    ``tools.default`` is ``allow`` on purpose: the worst case of the issue (a call the
    rules do not recognise passes), so every reading the sidecar gets wrong shows.
    ``extra`` adds top-level ``spec`` fields (``budgets``, for the budget tests).
    """
    upstreams = []
    for name, by_kind in ports.items():
        for kind, base in BASE_PATHS.items():
            entry: dict[str, Any] = {
                "name": f"{name}-{kind}",
                "url": f"http://127.0.0.1:{by_kind[kind]}{base}",
                "kind": KINDS[kind].value,
            }
            if kind == "llm":
                entry["provider"] = "openai"
            upstreams.append(entry)
    doc: dict[str, Any] = {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "differential", "namespace": "agents"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "upstreams": upstreams,
            "pricing": {"unknownModel": "default", "default": {"input": 1.0, "output": 2.0}},
            "audit": {"payload": "full"},
            "mcp": {
                "resources": {
                    "default": "deny",
                    "rules": [
                        {
                            "name": "public-files",
                            "action": "allow",
                            "uris": ["file:///srv/public/**"],
                        }
                    ],
                },
                "prompts": {
                    "default": "deny",
                    "rules": [{"name": "summaries", "action": "allow", "prompts": ["summar*"]}],
                },
            },
            "tools": dict(tools)
            if tools is not None
            else {
                "default": "allow",
                "rules": [
                    {"name": "no-gpt-5", "action": "deny", "kind": "llm", "models": ["gpt-5*"]},
                    {
                        "name": "no-admin",
                        "action": "deny",
                        "kind": "http",
                        "paths": ["/api/admin", "/api/admin/**"],
                    },
                    {
                        "name": "read-only-api",
                        "action": "deny",
                        "kind": "http",
                        "methods": ["DELETE", "PUT", "PATCH"],
                    },
                    {
                        "name": "no-delete-action",
                        "action": "deny",
                        "kind": "http",
                        "arguments": [{"path": "$.query.action", "in": ["delete", "purge"]}],
                    },
                    {
                        "name": "no-delete-tools",
                        "action": "deny",
                        "kind": "mcp",
                        "mcpTools": ["delete_*"],
                    },
                    {
                        "name": "no-system-files",
                        "action": "deny",
                        "kind": "mcp",
                        "mcpTools": ["read_file"],
                        "arguments": [{"path": "$.path", "regex": "^/(etc|root)/"}],
                    },
                ],
            },
        },
    }
    doc["spec"].update(extra or {})
    return doc


# ---------------------------------------------------------------------- what happened


@dataclass(frozen=True)
class Request:
    """One request as the agent sends it: the target is the raw request-target after the
    alias (``/go-api`` + ``target``), sent byte for byte."""

    alias: str
    method: str
    target: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    proxy: bool = False
    """Send in absolute form to the upstream's address (``HTTP_PROXY`` style), not to the
    alias."""
    chunked: bool = False
    """Send the body with ``Transfer-Encoding: chunked`` (no ``Content-Length``)."""

    @property
    def upstream(self) -> str:
        return self.alias.rpartition("-")[0]

    @property
    def kind(self) -> str:
        return self.alias.rpartition("-")[2]

    def describe(self) -> str:
        where = (
            f"(proxy to {self.alias}) {BASE_PATHS[self.kind]}" if self.proxy else f"/{self.alias}"
        )
        head = f"{self.method} {where}{self.target}"
        extra = "".join(f" [{k}: {v}]" for k, v in self.headers)
        try:
            text = self.body[:160].decode()
        except UnicodeDecodeError:
            text = f"<{len(self.body)} bytes, not UTF-8>"
        body = f" {text}" if self.body else ""
        if self.chunked:
            body = " (chunked)" + body
        return head + extra + body


@dataclass
class Exchange:
    """A request, the sidecar's answer and decision, and what the upstream executed."""

    request: Request
    status: int
    answer: bytes
    decision_id: str | None
    intent: dict[str, Any] | None
    """The sidecar's intent record (None: nothing was forwarded)."""
    executed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def forwarded(self) -> bool:
        return self.intent is not None

    @property
    def refusal(self) -> str:
        """The code of the sidecar's refusal, from its answer."""
        try:
            doc = json.loads(self.answer)
        except ValueError:
            return f"http {self.status}"
        if isinstance(doc, list):
            doc = doc[0] if doc else {}
        err = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(err, dict):
            data = err.get("data")
            code = err.get("code")
            if isinstance(data, dict) and "code" in data:
                code = data["code"]
            return str(code)
        return f"http {self.status}"


# ---------------------------------------------------------------------- the comparison


def sidecar_reading(intent: Mapping[str, Any]) -> dict[str, Any]:
    """What the sidecar decided on, from its audit record."""
    method, _, url = str(intent.get("target", "")).partition(" ")
    # Everything the sidecar decided on: a '#' in it is part of its path, not a fragment.
    path = urlsplit(url, allow_fragments=False).path
    payload = intent.get("payload")
    rpc: list[tuple[str, str | None, str | None]] = []
    for msg in payload if isinstance(payload, list) else [payload]:
        if isinstance(msg, dict) and isinstance(msg.get("method"), str):
            params = msg.get("params")
            key = _SUBJECT_KEYS.get(msg["method"])
            subject = params.get(key) if isinstance(params, dict) and key else None
            arguments = params.get("arguments") if isinstance(params, dict) else None
            arg_path = (
                arguments.get("path")
                if isinstance(arguments, dict) and msg["method"] == "tools/call"
                else None
            )
            rpc.append(
                (
                    msg["method"],
                    subject if isinstance(subject, str) else None,
                    arg_path if isinstance(arg_path, str) else None,
                )
            )
    return {
        "method": method,
        "path": path,
        "kind": intent.get("kind"),
        "model": intent.get("model"),
        "rpc": rpc,
    }


_SUBJECT_KEYS = {
    "tools/call": "name",
    "resources/read": "uri",
    "resources/subscribe": "uri",
    "prompts/get": "name",
}
"""The ``params`` member naming what a JSON-RPC method acts on."""


def executed_rpc(executed: Mapping[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(method, subject, a tool's ``path`` argument) of each JSON-RPC element an upstream
    executed."""
    return [
        (c["method"], c.get("tool") or c.get("uri") or c.get("name"), c.get("path"))
        for c in executed.get("rpc") or []
    ]


def resolved_uri(uri: str) -> str:
    """The resource a file-serving MCP server reads for ``uri``: percent-decoded, dot and
    empty segments resolved, scheme and host lower-cased."""
    parts = urlsplit(uri)
    path = posixpath.normpath(unquote(parts.path)) if parts.path else ""
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}"


def _decoded(path: str) -> str:
    return unquote_to_bytes(path).decode("utf-8", "surrogateescape")


def oracle_verdicts(
    executed: Mapping[str, Any], request: Request, tools: ToolAuthorizer, mcp: McpAuthorizer
) -> list[tuple[str, AuthzResult]]:
    """The policy's verdict on each call the upstream executed, as the upstream read it:
    one per JSON-RPC element (each is its own decision), else one."""
    endpoint = executed["endpoint"]
    kind: RequestKind | None
    if endpoint == "llm":
        kind = RequestKind.LLM
    elif endpoint == "mcp":
        kind = RequestKind.MCP
    else:
        kind = RequestKind.HTTP if KINDS[request.kind] is RequestKind.HTTP else None
    view = CallView(
        kind=kind,
        method=executed["method"],
        scheme="http",
        host="127.0.0.1",
        port=0,
        path=executed["route"],
        upstream=request.alias,
        query=(("action", executed["action"]),) if executed.get("action") is not None else (),
    )
    if endpoint == "llm":
        model = executed["model_resolved"]
        return [(f"model {model!r}", tools.authorize(replace(view, model=model)))]
    if endpoint != "mcp":
        return [(f"{view.method} {view.path}", tools.authorize(view))]
    servers = (request.alias, "127.0.0.1")
    out = []
    for method, subject, path in executed_rpc(executed):
        if method == "tools/call":
            arguments = {"path": path} if path is not None else {}
            tool = ToolCall(name=subject or "", arguments=arguments, server=request.alias)
            verdict = tools.authorize(replace(view, mcp_method=method, tool_calls=(tool,)))
        elif method in ("resources/read", "resources/subscribe"):
            subject = resolved_uri(subject or "")
            verdict = mcp.resources.decide(servers, subject)
        elif method == "prompts/get":
            verdict = mcp.prompts.decide(servers, subject or "")
        else:
            verdict = tools.authorize(replace(view, mcp_method=method))
        what = f"{method} {subject}" if subject else method
        out.append((what + (f" path={path!r}" if path is not None else ""), verdict))
    return out


def divergences(ex: Exchange, tools: ToolAuthorizer, mcp: McpAuthorizer) -> list[str]:
    """Every way in which what the upstream executed differs from what the sidecar decided.

    - refused by the sidecar: the upstream executed nothing;
    - forwarded: at most one execution, with the method, path, kind, model and JSON-RPC
      methods and tools the sidecar decided on, and every executed call allowed by the
      policy as the upstream read it.
    """
    out: list[str] = []
    if not ex.forwarded:
        for e in ex.executed:
            out.append(f"refused ({ex.refusal}) but the upstream executed {_brief(e)}")
        return out
    if len(ex.executed) > 1:
        out.append(f"forwarded once, executed {len(ex.executed)} times")
    assert ex.intent is not None
    s = sidecar_reading(ex.intent)
    for e in ex.executed:
        if e["method"] != s["method"]:
            out.append(
                f"sidecar decided method {s['method']}, upstream executed "
                f"{e['method']} (sent as {e['wire_method']})"
            )
        if _decoded(s["path"]) != e["path"]:
            out.append(f"sidecar decided path {s['path']!r}, upstream executed {e['path']!r}")
        endpoint = e["endpoint"]
        if endpoint in ("llm", "mcp") and s["kind"] != endpoint:
            out.append(
                f"upstream executed an {endpoint} call ({_brief(e)}), sidecar "
                f"decided kind {s['kind']}"
            )
        if endpoint == "llm" and s["kind"] == "llm":
            decided = resolve_model(s["model"]) if isinstance(s["model"], str) else None
            if decided != e["model_resolved"]:
                out.append(f"sidecar decided model {s['model']!r}, upstream served {e['model']!r}")
        if endpoint == "mcp" and s["kind"] == "mcp" and executed_rpc(e) != s["rpc"]:
            out.append(f"sidecar decided JSON-RPC {s['rpc']}, upstream executed {executed_rpc(e)}")
        for what, verdict in oracle_verdicts(e, ex.request, tools, mcp):
            if not verdict.allowed:
                out.append(
                    f"upstream executed {what}, which the policy denies "
                    f"({verdict.code}, rule {verdict.rule})"
                )
    return out


def _brief(e: Mapping[str, Any]) -> str:
    parts = [e["method"], repr(e["route"])]
    if e.get("model") is not None:
        parts.append(f"model={e['model']!r}")
    if e.get("rpc"):
        parts.append("rpc=" + ",".join(m + (f"({x})" if x else "") for m, x, _ in executed_rpc(e)))
    return " ".join(parts)


# ---------------------------------------------------------------------- the bed


class _LineLog:
    """New JSON lines of an upstream's log file, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._pending = b""

    def new(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._pending + data
        lines = data.split(b"\n")
        self._pending = lines.pop()
        return [json.loads(line) for line in lines if line.strip()]


class _SpoolLog:
    """Records of the sidecar's audit spool, read incrementally, by decision id."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._offsets: dict[int, int] = {}
        self.intents: dict[str, dict[str, Any]] = {}

    def refresh(self) -> None:
        if not self.directory.is_dir():
            return
        for number in list_segments(self.directory):
            base = self._offsets.get(number, 0)
            with segment_path(self.directory, number).open("rb") as f:
                f.seek(base)
                data = f.read()
            frames, stop, _ = iter_frames(data, number, base)
            self._offsets[number] = stop
            for frame in frames:
                if frame.is_checkpoint:
                    continue
                record = json.loads(frame.data)
                if record.get("phase") == "intent":
                    self.intents[record["decision_id"]] = record


class Bed:
    """The running bed: send requests through the sidecar and see both readings."""

    def __init__(
        self,
        sidecar_port: int,
        spool: Path,
        logs: Mapping[str, Path],
        policy: Mapping[str, Any],
        ports: Mapping[str, Mapping[str, int]],
    ) -> None:
        self.sidecar_port = sidecar_port
        self.ports = ports
        self._spool = _SpoolLog(spool)
        self._logs = {name: _LineLog(path) for name, path in logs.items()}
        self._by_tag: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        """Requests may be sent from several threads (budget tests): one reads the logs."""
        spec = GovernancePolicy.model_validate(policy).spec
        self.tools = ToolAuthorizer(spec.tools)
        self.mcp = McpAuthorizer(spec.mcp)

    def send(self, request: Request, *, direct: bool = False) -> Exchange:
        """Send ``request`` through the sidecar (or, ``direct``, straight to the upstream
        at the path the alias stands for: what the upstream reads with no proxy between)."""
        tag = uuid.uuid4().hex
        if direct:
            port = self.ports[request.upstream][request.kind]
            target = BASE_PATHS[request.kind] + request.target
        else:
            port, target = self.sidecar_port, self.request_target(request)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        try:
            conn.putrequest(request.method, target, skip_host=False, skip_accept_encoding=True)
            sent = {k.lower() for k, _ in request.headers}
            if "content-type" not in sent and request.body:
                conn.putheader("Content-Type", "application/json")
            for name, value in request.headers:
                conn.putheader(name, value)
            conn.putheader(TAG_HEADER, tag)
            if request.chunked:
                conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                chunk = f"{len(request.body):x}\r\n".encode() + request.body + b"\r\n"
                conn.send((chunk if request.body else b"") + b"0\r\n\r\n")
            else:
                conn.putheader("Content-Length", str(len(request.body)))
                conn.endheaders(request.body or None)
            resp = conn.getresponse()
            answer = resp.read()
            status = resp.status
            decision_id = resp.getheader("x-haltgate-decision-id")
        finally:
            conn.close()
        with self._lock:
            self._spool.refresh()
            for log in self._logs.values():
                for line in log.new():
                    self._by_tag.setdefault(line.get("tag", ""), []).append(line)
            intent = self._spool.intents.get(decision_id) if decision_id else None
            executed = self._by_tag.pop(tag, [])
        return Exchange(request, status, answer, decision_id, intent, executed)

    def request_target(self, request: Request) -> str:
        """The request-target sent to the sidecar: alias path or absolute URL."""
        if not request.proxy:
            return f"/{request.alias}{request.target}"
        port = self.ports[request.upstream][request.kind]
        return f"http://127.0.0.1:{port}{BASE_PATHS[request.kind]}{request.target}"

    def check(self, request: Request) -> tuple[Exchange, list[str]]:
        ex = self.send(request)
        return ex, divergences(ex, self.tools, self.mcp)


def _haltgate(*args: str) -> list[str]:
    return [sys.executable, "-c", "from haltgate.cli.main import main; main()", *args]


@contextmanager
def running_bed(
    work: Path, tools: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None
) -> Iterator[Bed]:
    """Start the three upstreams and the sidecar (all on free loopback ports) in ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    free = iter(free_ports(3 * len(UPSTREAMS) + 3))
    ports = {name: {kind: next(free) for kind in BASE_PATHS} for name in UPSTREAMS}
    explicit, admin, metrics = next(free), next(free), next(free)
    logs = {name: work / f"{name}.executed.jsonl" for name in ports}
    policy = policy_document(ports, tools, extra)
    policy_path = work / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(policy))
    reader = [sys.executable, "-m", "haltgate.testbed.standins.reader", "--host", "127.0.0.1"]

    def reader_ports(name: str) -> list[str]:
        return [arg for port in ports[name].values() for arg in ("--port", str(port))]

    processes = [
        ManagedProcess(
            "goupstream",
            [
                str(binaries.go_upstream()),
                "-log",
                str(logs["go"]),
                "-listen",
                ",".join(f"127.0.0.1:{p}" for p in ports["go"].values()),
            ],
            work / "go.log",
        ),
        ManagedProcess(
            "py-reader",
            [*reader, *reader_ports("py"), "--log", str(logs["py"]), "--name", "py"],
            work / "py.log",
        ),
        ManagedProcess(
            "pyfirst-reader",
            [
                *reader,
                *reader_ports("pyfirst"),
                "--log",
                str(logs["pyfirst"]),
                "--name",
                "pyfirst",
                "--duplicates",
                "first",
            ],
            work / "pyfirst.log",
        ),
        ManagedProcess(
            "sidecar",
            _haltgate(
                "sidecar",
                "--policy",
                str(policy_path),
                "--state-dir",
                str(work / "state"),
                "--audit-dir",
                str(work / "audit"),
                "--mode",
                "explicit",
                "--listen",
                f"127.0.0.1:{explicit}",
                "--admin-listen",
                f"127.0.0.1:{admin}",
                "--metrics-listen",
                f"127.0.0.1:{metrics}",
                "--log-level",
                "warning",
            ),
            work / "sidecar.log",
            env={**os.environ, "HALTGATE_POD_NAMESPACE": "agents", "HALTGATE_POD_NAME": "agent-0"},
        ),
    ]
    with ExitStack() as stack:
        for proc in processes:
            proc.start()
            stack.callback(proc.stop)
        last_ports = [*(ports[name]["api"] for name in UPSTREAMS), admin]
        for proc, port in zip(processes, last_ports, strict=True):
            wait_until(
                partial(port_open, "127.0.0.1", port),
                timeout=START_TIMEOUT,
                what=proc.name,
                log=proc.log,
                alive=proc.alive,
            )
        yield Bed(explicit, work / "audit", logs, policy, ports)


def report(cases: Sequence[tuple[str, Exchange, list[str]]]) -> str:
    """A readable list of divergent cases (for assertion messages)."""
    lines = []
    for name, ex, found in cases:
        lines.append(f"- {name}: {ex.request.describe()}")
        lines.extend(f"    {d}" for d in found)
    return "\n".join(lines)
