"""The explicit corpus: every reading difference listed in issue 15's "Why", and those
probing the bed found since, as requests.

Each case is sent through the sidecar to every upstream reader (Go, Python last-wins,
Python first-wins), by the alias of its kind and in proxy form; the policy is
:func:`tests.differential.harness.policy_document` (deny ``/api/admin/**``, the ``gpt-5*``
models, DELETE/PUT/PATCH on the API, the ``delete_*`` tools and ``read_file`` of system
paths; allow the rest).

A case whose divergence has no fix yet carries ``open_divergence`` (the reason, with the
fix it needs) and where it shows (``open_on``, ``open_forms``): those runs are strict
expected failures, so a fix makes them pass unexpectedly and the run fails until the mark
is removed here. ``python -m tests.differential`` prints the whole table.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    """``api``, ``llm`` or ``mcp``: which alias of each upstream the request goes to."""
    method: str
    target: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    why: str = ""
    open_divergence: str = ""
    """Set when the sidecar still diverges on this case and no fix exists yet: the test is
    then an expected failure (strict: it fails the run once fixed, so the mark goes)."""
    open_on: tuple[str, ...] = ("go", "py", "pyfirst")
    """The upstream readers the open divergence shows on (the others must agree)."""
    open_forms: tuple[str, ...] = ("alias", "proxy")
    """The ways of sending it (by alias, in proxy form) the open divergence shows in."""
    chunked: bool = False
    """Send the body chunked (no ``Content-Length``)."""


def chat(*pairs: tuple[str, Any]) -> bytes:
    """A chat/completions body with keys in this order (duplicates kept as written)."""
    members = [*pairs, ("messages", [{"role": "user", "content": "hi"}]), ("max_tokens", 5)]
    return ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in members) + "}").encode()


def rpc(text: str) -> bytes:
    """A JSON-RPC body written by hand (so duplicate and case-colliding keys survive)."""
    return text.encode()


_CHAT = "/v1/chat/completions"
_GPT5 = chat(("model", "gpt-5"))

CASES: tuple[Case, ...] = (
    # --- paths: rules match one spelling, the upstream decodes another
    Case(
        "path-percent-unreserved",
        "api",
        "GET",
        "/api/%61dmin/x",
        why="%61 is 'a': the upstream receives /api/admin/x",
    ),
    Case("path-percent-unreserved-every-letter", "api", "GET", "/%61pi/%61%64%6D%69%6E/x"),
    Case("path-double-slash-leading", "api", "GET", "//api/admin/x"),
    Case("path-double-slash-inner", "api", "GET", "/api//admin/x"),
    Case("path-encoded-slash", "api", "GET", "/api%2Fadmin/x"),
    Case("path-encoded-slash-lower", "api", "GET", "/api/admin%2fx"),
    Case("path-encoded-backslash", "api", "GET", "/api/admin%5Cx"),
    Case("path-nul", "api", "GET", "/api/admin%00/x"),
    Case(
        "path-case",
        "api",
        "GET",
        "/api/ADMIN/x",
        why="case-sensitive upstreams route ADMIN elsewhere: no divergence expected",
    ),
    Case("path-semicolon-segment", "api", "GET", "/api/admin;x/y"),
    Case("path-semicolon-end", "api", "GET", "/api/admin;jsessionid=1"),
    Case("path-dot-segment", "api", "GET", "/api/x/../admin/y"),
    Case("path-encoded-dot-segment", "api", "GET", "/api/x/%2e%2E/admin/y"),
    Case("path-single-dot", "api", "GET", "/api/./admin/y"),
    Case("path-trailing-slash", "api", "GET", "/api/admin/"),
    Case(
        "path-fragment",
        "api",
        "GET",
        "/api/admin#x",
        why="no client sends a fragment; refused (ambiguous_path) before any rule runs",
    ),
    Case("path-fragment-segment", "api", "GET", "/api/admin#/x"),
    Case("path-encoded-hash", "api", "GET", "/api/admin%23x"),
    Case("llm-fragment", "llm", "POST", "/v1/chat/completions#x", _GPT5),
    # --- LLM calls in disguise (a denied model through a path not classified as LLM)
    Case("llm-percent-encoded-endpoint", "llm", "POST", "/v1/chat/%63ompletions", _GPT5),
    Case("llm-trailing-slash", "llm", "POST", "/v1/chat/completions/", _GPT5),
    Case("llm-semicolon", "llm", "POST", "/v1/chat/completions;x", _GPT5),
    Case("llm-double-slash", "llm", "POST", "//v1//chat/completions", _GPT5),
    Case("llm-encoded-slash", "llm", "POST", "/v1/chat%2Fcompletions", _GPT5),
    Case(
        "llm-azure-deployment",
        "llm",
        "POST",
        "/deployments/gpt-5/chat/completions",
        chat(("model", "gpt-4o-mini")),
        why="Azure serves the path's deployment: a body model that differs is ambiguous_model",
    ),
    # --- JSON read twice, differently
    Case(
        "json-case-collision-model",
        "llm",
        "POST",
        _CHAT,
        chat(("model", "gpt-4o-mini"), ("Model", "gpt-5")),
        why="Go's encoding/json matches Model to model; the last match wins",
    ),
    Case(
        "json-case-collision-model-upper",
        "llm",
        "POST",
        _CHAT,
        chat(("model", "gpt-4o-mini"), ("MODEL", "gpt-5")),
    ),
    Case(
        "json-duplicate-model-denied-first",
        "llm",
        "POST",
        _CHAT,
        chat(("model", "gpt-5"), ("model", "gpt-4o-mini")),
        why="first-wins parsers serve gpt-5, orjson reads gpt-4o-mini",
    ),
    Case(
        "json-duplicate-model-denied-last",
        "llm",
        "POST",
        _CHAT,
        chat(("model", "gpt-4o-mini"), ("model", "gpt-5")),
    ),
    Case(
        "mcp-case-collision-method",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call",'
            '"params":{"name":"delete_file","arguments":{"path":"/etc"}}}'
        ),
    ),
    Case(
        "mcp-case-collision-tool-name",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"tools/call",'
            '"params":{"name":"search","Name":"delete_file","arguments":{}}}'
        ),
    ),
    Case(
        "mcp-duplicate-tool-name",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"tools/call",'
            '"params":{"name":"delete_file","name":"search","arguments":{}}}'
        ),
    ),
    Case(
        "mcp-duplicate-method",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping",'
            '"params":{"name":"delete_file","arguments":{}}}'
        ),
    ),
    Case(
        "mcp-case-collision-params",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"tools/call",'
            '"params":{"name":"search","arguments":{}},'
            '"Params":{"name":"delete_file","arguments":{}}}'
        ),
    ),
    Case(
        "json-escaped-duplicate-model",
        "llm",
        "POST",
        _CHAT,
        b'{"model":"gpt-4o-mini","\\u006dodel":"gpt-5","messages":[],"max_tokens":5}',
        why="the second key is 'model' once its escape is decoded",
    ),
    Case(
        "json-escaped-case-collision-model",
        "llm",
        "POST",
        _CHAT,
        b'{"model":"gpt-4o-mini","\\u004dodel":"gpt-5","messages":[],"max_tokens":5}',
    ),
    Case(
        "mcp-long-s-params",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
            '"arguments":{}},"param\u017f":{"name":"delete_file","arguments":{}}}'
        ),
        why="Go folds U+017F (long s) to s: 'param\u017f' is params",
    ),
    Case(
        "mcp-argument-case-collision",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file",'
            '"arguments":{"path":"/srv/public/a","Path":"/etc/shadow"}}}'
        ),
        why="a Go tool decodes its arguments into a struct: Path is path",
    ),
    Case(
        "mcp-argument-duplicate",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file",'
            '"arguments":{"path":"/etc/shadow","path":"/srv/public/a"}}}'
        ),
    ),
    Case(
        "mcp-argument-lone-case-variant",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file",'
            '"arguments":{"Path":"/etc/shadow"}}}'
        ),
        why="refused (ambiguous_json): the rule reads $.path and a Go tool reads Path as path",
    ),
    # --- MCP batches and methods
    Case(
        "mcp-batch-denied-second",
        "mcp",
        "POST",
        "",
        rpc(
            '[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
            '"arguments":{"text":"a"}}},{"jsonrpc":"2.0","id":2,"method":"tools/call",'
            '"params":{"name":"delete_file","arguments":{"path":"/"}}}]'
        ),
    ),
    Case(
        "mcp-batch-ping-then-tool",
        "mcp",
        "POST",
        "",
        rpc(
            '[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,'
            '"method":"tools/call","params":{"name":"delete_file","arguments":{}}}]'
        ),
    ),
    Case(
        "mcp-batch-collision-in-second",
        "mcp",
        "POST",
        "",
        rpc(
            '[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
            '"arguments":{}}},{"jsonrpc":"2.0","id":2,"method":"ping",'
            '"METHOD":"tools/call","params":{"name":"delete_file"}}]'
        ),
    ),
    Case(
        "mcp-tools-call-notification",
        "mcp",
        "POST",
        "",
        rpc('{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{}}}'),
        why="a tools/call without id runs upstream but gets no answer to settle",
    ),
    Case(
        "mcp-tools-call-null-id",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"echo",'
            '"arguments":{}}}'
        ),
    ),
    Case(
        "mcp-old-jsonrpc-version",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"delete_file",'
            '"arguments":{}}}'
        ),
    ),
    Case(
        "mcp-batch-non-object-element",
        "mcp",
        "POST",
        "",
        rpc(
            '[1,{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo",'
            '"arguments":{}}}]'
        ),
    ),
    Case(
        "mcp-method-case-variant",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"delete_file",'
            '"arguments":{}}}'
        ),
        why="strict upstreams dispatch exact method names: not executed as a tool",
    ),
    Case(
        "mcp-resources-read",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"resources/read",'
            '"params":{"uri":"file:///etc/shadow"}}'
        ),
    ),
    Case(
        "mcp-prompts-get",
        "mcp",
        "POST",
        "",
        rpc('{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"x"}}'),
    ),
    Case(
        "mcp-resource-dot-segments",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"resources/read",'
            '"params":{"uri":"file:///srv/public/../../etc/shadow"}}'
        ),
        why="allowed prefix, but the server resolves the dot segments",
    ),
    Case(
        "mcp-resource-encoded-dots",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"resources/read",'
            '"params":{"uri":"file:///srv/public/%2e%2e/%2E%2E/etc/shadow"}}'
        ),
    ),
    Case(
        "mcp-resource-encoded-slash",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"resources/read",'
            '"params":{"uri":"file:///srv/public/..%2F..%2Fetc/shadow"}}'
        ),
    ),
    Case(
        "mcp-resource-empty-segment",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"resources/read",'
            '"params":{"uri":"file:///srv/public//etc/shadow"}}'
        ),
    ),
    Case(
        "mcp-resource-case-collision",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"resources/read",'
            '"params":{"uri":"file:///srv/public/a","URI":"file:///etc/shadow"}}'
        ),
    ),
    Case(
        "mcp-prompt-case-collision",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"prompts/get",'
            '"params":{"name":"summarize","Name":"exfiltrate"}}'
        ),
    ),
    Case(
        "mcp-batch-tool-and-denied-resource",
        "mcp",
        "POST",
        "",
        rpc(
            '[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
            '"arguments":{}}},{"jsonrpc":"2.0","id":2,"method":"resources/read",'
            '"params":{"uri":"file:///etc/shadow"}}]'
        ),
    ),
    # --- MCP calls in disguise: JSON-RPC to an MCP route of an upstream of another kind
    Case(
        "mcp-in-disguise-llm-upstream",
        "llm",
        "POST",
        "/mcp",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file",'
            '"arguments":{}}}'
        ),
        why="LLM gateways (LiteLLM) serve MCP at /mcp on the same origin: mcp_in_disguise",
    ),
    Case(
        "mcp-in-disguise-http-upstream",
        "api",
        "POST",
        "/mcp",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file",'
            '"arguments":{}}}'
        ),
        why="many APIs serve MCP at /mcp beside their REST routes: mcp_in_disguise",
    ),
    # --- compressed request bodies: decoded once by the sidecar, again by the upstream
    Case(
        "body-deflate-chunked",
        "api",
        "POST",
        _CHAT,
        zlib.compress(_GPT5),
        (("Content-Encoding", "deflate"),),
        chunked=True,
        why="refused: request bodies with a Content-Encoding are not accepted",
    ),
    Case(
        "body-double-deflate-chunked",
        "api",
        "POST",
        _CHAT,
        zlib.compress(zlib.compress(_GPT5)),
        (("Content-Encoding", "deflate"),),
        chunked=True,
        why="refused: request bodies with a Content-Encoding have no single reading",
    ),
    Case(
        "body-double-deflate-llm-upstream",
        "llm",
        "POST",
        _CHAT,
        zlib.compress(zlib.compress(_GPT5)),
        (("Content-Encoding", "deflate"),),
        chunked=True,
    ),
    # --- headers that change the meaning of a request
    Case(
        "header-x-http-method-override",
        "api",
        "POST",
        "/api/items",
        b"{}",
        (("X-HTTP-Method-Override", "DELETE"),),
    ),
    Case("header-x-http-method", "api", "POST", "/api/items", b"{}", (("X-HTTP-Method", "PUT"),)),
    Case(
        "header-x-method-override",
        "api",
        "POST",
        "/api/items",
        b"{}",
        (("X-Method-Override", "patch"),),
    ),
    Case(
        "query-method-override",
        "api",
        "POST",
        "/api/items?_method=DELETE",
        b"{}",
        why="Rails, Laravel and Express middleware honour _method",
    ),
    Case(
        "form-method-override",
        "api",
        "POST",
        "/api/items",
        b"_method=PUT&a=1",
        (("Content-Type", "application/x-www-form-urlencoded"),),
    ),
    Case(
        "header-x-original-url",
        "api",
        "GET",
        "/api/items",
        b"",
        (("X-Original-URL", "/api/admin/x"),),
        why="IIS-style rewrites route on the header's path",
    ),
    Case(
        "header-x-rewrite-url",
        "api",
        "GET",
        "/api/items",
        b"",
        (("X-Rewrite-URL", "/api/%61dmin/x"),),
    ),
    Case(
        "header-x-forwarded-prefix",
        "api",
        "GET",
        "/x",
        b"",
        (("X-Forwarded-Prefix", "/api/admin"),),
        why="Spring's ForwardedHeaderFilter and Werkzeug's ProxyFix rebuild the path under it",
    ),
    # --- query strings: rules read `action` (deny delete, purge), readers read it too
    Case("query-action", "api", "GET", "/api/items?action=delete"),
    Case("query-action-encoded", "api", "GET", "/api/items?action=%64el%65te"),
    Case("query-action-plus", "api", "GET", "/api/items?x=a+b&action=purge"),
    Case(
        "query-action-repeated-last",
        "api",
        "GET",
        "/api/items?action=list&action=delete",
        why="Django's QueryDict reads the last value",
    ),
    Case(
        "query-action-repeated-first",
        "api",
        "GET",
        "/api/items?action=delete&action=list",
        why="Go's Query().Get and Flask read the first value",
    ),
    Case("query-action-case", "api", "GET", "/api/items?Action=delete"),
    Case("query-action-array", "api", "GET", "/api/items?action[]=delete"),
    Case("query-action-double-encoded", "api", "GET", "/api/items?action=%2564elete"),
    Case("query-semicolon", "api", "GET", "/api/items?action=list;action=delete"),
    Case("query-malformed-escape", "api", "GET", "/api/items?action=%zzdelete"),
    # --- model names the rules must see as the router does
    Case("model-upper-case", "llm", "POST", _CHAT, chat(("model", "GPT-5"))),
    Case("model-leading-space", "llm", "POST", _CHAT, chat(("model", " gpt-5"))),
    Case("model-provider-prefix", "llm", "POST", _CHAT, chat(("model", "openai/gpt-5"))),
    # --- controls: what must pass and agree (so the bed is not refusing everything)
    Case("control-api-get", "api", "GET", "/api/items"),
    Case("control-api-query", "api", "GET", "/api/items?action=list&q=a+b&tag=x&tag=y"),
    Case("control-llm-allowed", "llm", "POST", _CHAT, chat(("model", "gpt-4o-mini"))),
    Case(
        "control-mcp-tool",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
            '"arguments":{"text":"hi"}}}'
        ),
    ),
    Case(
        "control-mcp-resource",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"resources/read",'
            '"params":{"uri":"file:///srv/public/readme.txt"}}'
        ),
    ),
    Case(
        "control-mcp-prompt",
        "mcp",
        "POST",
        "",
        rpc('{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"summarize"}}'),
    ),
    Case(
        "control-mcp-session",
        "mcp",
        "POST",
        "",
        rpc(
            '[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":'
            '"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}},'
            '{"jsonrpc":"2.0","method":"notifications/initialized"},'
            '{"jsonrpc":"2.0","id":2,"method":"tools/list"}]'
        ),
    ),
    Case(
        "control-mcp-tool-argument",
        "mcp",
        "POST",
        "",
        rpc(
            '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file",'
            '"arguments":{"path":"/srv/public/a"}}}'
        ),
    ),
    Case(
        "control-mcp-batch",
        "mcp",
        "POST",
        "",
        rpc(
            '[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
            '"arguments":{"text":"a"}}},{"jsonrpc":"2.0","id":2,"method":"tools/call",'
            '"params":{"name":"search","arguments":{"query":"b"}}}]'
        ),
    ),
)

CONTROLS = frozenset(c.name for c in CASES if c.name.startswith("control-"))
"""Cases the sidecar must forward (a bed that refuses everything proves nothing)."""
