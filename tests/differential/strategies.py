"""Hypothesis strategies for requests whose readings may differ between proxy and upstream.

They draw from a small vocabulary around the corpus policy's rules (``/api/admin``,
``gpt-5``, ``delete_*``, DELETE/PUT/PATCH) so that a reading difference, where there is
one, changes the decision, and spell it in every way a reader may treat differently:
percent-encodings (upper and lower hex, of letters and of ``/``), dot and empty segments,
``;`` parameters, case; query strings; method-override headers; duplicate and
case-colliding JSON keys at the top and in ``params``; JSON-RPC batches of mixed methods.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from tests.differential.harness import UPSTREAMS, Request

upstreams = st.sampled_from(UPSTREAMS)
"""Which reader; every request also draws whether it goes by alias or in proxy form."""

# ---------------------------------------------------------------------- paths

_WORDS = ("api", "admin", "items", "x", "v1")


@st.composite
def _spelled_segment(draw: st.DrawFn, word: str) -> str:
    """``word`` as one path segment, possibly percent-encoded, cased, with parameters."""
    case = draw(st.sampled_from(("keep", "keep", "upper", "title")))
    if case == "upper":
        word = word.upper()
    elif case == "title":
        word = word.title()
    out = []
    for ch in word:
        if draw(st.integers(0, 9)) == 0:
            code = f"{ord(ch):02X}"
            out.append("%" + (code if draw(st.booleans()) else code.lower()))
        else:
            out.append(ch)
    segment = "".join(out)
    if draw(st.integers(0, 12)) == 0:
        segment += draw(st.sampled_from((";x", ";jsessionid=1", ";")))
    return segment


_SEPARATORS = ("/",) * 24 + ("//", "%2F", "%2f", "%5C", "/./", "/x/../", "/%2e%2e/")


@st.composite
def api_paths(draw: st.DrawFn) -> str:
    """Request targets under the API alias, mostly spellings of ``/api/admin/...``."""
    words = ["api", draw(st.sampled_from(("admin", "admin", "items")))]
    words += draw(st.lists(st.sampled_from(_WORDS), max_size=2))
    path = ""
    for word in words:
        path += draw(st.sampled_from(_SEPARATORS)) + draw(_spelled_segment(word))
    if draw(st.integers(0, 4)) == 0:
        path += "/"
    if not path.startswith("/"):
        path = "/" + path  # a separator like %2F first: the target must start with /
    return path


@st.composite
def path_requests(draw: st.DrawFn) -> Request:
    method = draw(st.sampled_from(("GET", "GET", "POST", "DELETE")))
    body = b"{}" if method == "POST" else b""
    return Request(
        f"{draw(upstreams)}-api", method, draw(api_paths()), body, proxy=draw(st.booleans())
    )


# ---------------------------------------------------------------------- query strings

_QUERY_NAMES = ("action",) * 6 + ("Action", "ACTION", "action[]", "%61ction", "x", "q")
_QUERY_VALUES = (
    "delete",
    "purge",
    "list",
    "%64elete",
    "DEL%45TE",
    "del%2565te",
    "de+lete",
    "delete%20",
    "",
)
_QUERY_SEPARATORS = ("&",) * 10 + (";", "&&")


@st.composite
def query_requests(draw: st.DrawFn) -> Request:
    """``/api/items`` with a query of up to four pairs around the ``action`` parameter the
    policy reads (deny ``delete`` and ``purge``): encoded, repeated, in other cases and
    array forms, split by ``;`` or empty pairs."""
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(_QUERY_NAMES), st.sampled_from(_QUERY_VALUES)),
            min_size=1,
            max_size=4,
        )
    )
    query = ""
    for i, (name, value) in enumerate(pairs):
        if i:
            query += draw(st.sampled_from(_QUERY_SEPARATORS))
        query += name if draw(st.integers(0, 9)) == 0 and not value else f"{name}={value}"
    return Request(
        f"{draw(upstreams)}-api", "GET", "/api/items?" + query, proxy=draw(st.booleans())
    )


# ---------------------------------------------------------------------- headers

_OVERRIDE_NAMES = (
    "X-HTTP-Method-Override",
    "x-http-method-override",
    "X-HTTP-Method",
    "X-Method-Override",
    "X-HTTP-METHOD-OVERRIDE",
)
_REWRITES = ("X-Original-URL", "X-Rewrite-URL", "x-original-url")
_OVERRIDE_VALUES = ("DELETE", "delete", "PUT", "PATCH", " patch", "GET", "POST")


@st.composite
def override_requests(draw: st.DrawFn) -> Request:
    """A request to an allowed path that asks, in up to two ways, to be read as another
    method (override headers, ``_method`` in the query or a form body) or path (rewrite
    headers)."""
    method = draw(st.sampled_from(("POST", "POST", "GET", "DELETE")))
    headers = list(
        draw(
            st.lists(
                st.tuples(st.sampled_from(_OVERRIDE_NAMES), st.sampled_from(_OVERRIDE_VALUES)),
                max_size=2,
            )
        )
    )
    if draw(st.integers(0, 5)) == 0:
        headers.append((draw(st.sampled_from(_REWRITES)), draw(api_paths())))
    target = "/api/items"
    if draw(st.integers(0, 4)) == 0:
        target += (
            "?"
            + draw(st.sampled_from(("_method", "_METHOD", "%5Fmethod")))
            + "="
            + draw(st.sampled_from(_OVERRIDE_VALUES)).strip()
        )
    body = b"{}" if method == "POST" else b""
    if method == "POST" and draw(st.integers(0, 4)) == 0:
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        body = b"a=1&_method=" + draw(st.sampled_from(_OVERRIDE_VALUES)).strip().encode()
    return Request(
        f"{draw(upstreams)}-api", method, target, body, tuple(headers), proxy=draw(st.booleans())
    )


# ---------------------------------------------------------------------- JSON shapes

_MODELS = ("gpt-4o-mini", "gpt-5", "GPT-5", " gpt-5", "openai/gpt-5", "gpt-5-mini", "Gpt-4o-mini")
_MODEL_KEYS = ("model",) * 6 + ("Model", "MODEL", "mOdel")


def members(pairs: list[tuple[str, Any]]) -> str:
    """A JSON object written member by member: duplicate keys survive."""
    return (
        "{"
        + ",".join(
            f"{json.dumps(k)}:{v if isinstance(v, Raw) else json.dumps(v)}" for k, v in pairs
        )
        + "}"
    )


class Raw(str):
    """JSON text inserted as is (a nested object written by :func:`members`)."""


def _count(roll: int) -> int:
    """How many model members: one in 7 of 10 draws, else two or three."""
    return 1 if roll < 7 else roll - 6 if roll < 9 else 3


@st.composite
def llm_requests(draw: st.DrawFn) -> Request:
    """A chat/completions call naming one or more models under colliding keys."""
    pairs: list[tuple[str, Any]] = [
        (draw(st.sampled_from(_MODEL_KEYS)), draw(st.sampled_from(_MODELS)))
        for _ in range(_count(draw(st.integers(0, 9))))
    ]
    pairs.append(("messages", [{"role": "user", "content": "hi"}]))
    if draw(st.booleans()):
        nested = members([(draw(st.sampled_from(_MODEL_KEYS)), draw(st.sampled_from(_MODELS)))])
        pairs.append(
            (draw(st.sampled_from(("metadata", "metadata", "extra_body", "Messages"))), Raw(nested))
        )
    pairs.append(("max_tokens", 5))
    order = draw(st.permutations(pairs))
    path = draw(
        st.sampled_from(
            (
                "/v1/chat/completions",
                "/v1/chat/completions",
                "/v1/chat/%63ompletions",
                "/v1/chat/completions/",
                "/v1/chat/completions;x",
                "/v1/responses",
            )
        )
    )
    return Request(
        f"{draw(upstreams)}-llm",
        "POST",
        path,
        members(list(order)).encode(),
        proxy=draw(st.booleans()),
    )


# ---------------------------------------------------------------------- MCP batches

_RPC_METHODS = (
    "tools/call",
    "tools/call",
    "tools/call",
    "ping",
    "tools/list",
    "initialize",
    "notifications/initialized",
    "Tools/Call",
    "resources/read",
    "prompts/get",
)
_TOOLS = ("echo", "search", "read_file", "read_file", "delete_file", "delete_all")
_URIS = (
    "file:///srv/public/readme.txt",
    "file:///etc/shadow",
    "file:///srv/public/../../etc/shadow",
    "file:///srv/public/%2e%2e/etc/shadow",
    "file:///srv/public/..%2Fetc/shadow",
    "file:///srv/public//etc/shadow",
    "FILE:///srv/public/a",
    "file:///srv/public/%61",
)
_PROMPTS = ("summarize", "summary-short", "exfiltrate", "Summarize")
_PATHS = ("/srv/public/a", "/etc/shadow", "/root/.ssh/id_rsa", "/srv/public/../../etc/x")
_SUBJECTS = {"resources/read": ("uri", _URIS), "prompts/get": ("name", _PROMPTS)}


@st.composite
def rpc_element(draw: st.DrawFn, ident: int) -> str:
    pairs: list[tuple[str, Any]] = [("jsonrpc", "2.0")]
    method = draw(st.sampled_from(_RPC_METHODS))
    if not method.startswith("notifications/"):
        pairs.append(("id", ident))
    pairs.append(("method", method))
    if draw(st.integers(0, 12)) == 0:  # a second method under a colliding or equal key
        pairs.append(
            (
                draw(st.sampled_from(("Method", "METHOD", "method"))),
                draw(st.sampled_from(_RPC_METHODS)),
            )
        )
    key, values = _SUBJECTS.get(method, ("name", _TOOLS))
    params: list[tuple[str, Any]] = [(key, draw(st.sampled_from(values)))]
    if draw(st.integers(0, 12)) == 0:
        params.append(
            (draw(st.sampled_from((key.title(), key.upper(), key))), draw(st.sampled_from(values)))
        )
    if method == "tools/call":
        arguments = [
            (draw(st.sampled_from(("path", "path", "Path", "text"))), draw(st.sampled_from(_PATHS)))
            for _ in range(draw(st.integers(1, 2)))
        ]
        if any(k == "Path" for k, _ in arguments) and all(k != "path" for k, _ in arguments):
            # A lone case variant of a constrained argument key is an open divergence
            # (corpus: mcp-argument-lone-case-variant); here it only comes with a collision.
            arguments.append(("path", draw(st.sampled_from(_PATHS))))
        params.append(("arguments", Raw(members(arguments))))
    pairs.append(("params", Raw(members(draw(st.permutations(params))))))
    if draw(st.integers(0, 12)) == 0:
        # "param\u017f": Go folds the long s to s, so it is "params" there
        pairs.append(
            (
                draw(st.sampled_from(("Params", "param\u017f"))),
                Raw(members([("name", draw(st.sampled_from(_TOOLS)))])),
            )
        )
    return members(draw(st.permutations(pairs)))


@st.composite
def mcp_requests(draw: st.DrawFn) -> Request:
    """A JSON-RPC message or batch of one to four elements."""
    count = draw(st.integers(1, 4))
    elements = [draw(rpc_element(i + 1)) for i in range(count)]
    batch = count > 1 or draw(st.booleans())
    body = ("[" + ",".join(elements) + "]") if batch else elements[0]
    return Request(f"{draw(upstreams)}-mcp", "POST", "", body.encode(), proxy=draw(st.booleans()))
