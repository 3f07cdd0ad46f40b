"""Stand-in upstream that says what it executed: the Python side of the differential tests.

It reads every request the way aiohttp services with orjson read them, and writes what it
executed as one JSON line per request to a log file (before answering), so a test can
compare it with what the sidecar decided. Its Go counterpart is ``testbed/goupstream``
(net/http + encoding/json); both log the same fields:

``upstream``, ``tag`` (the ``X-Differential-Tag`` header), ``method`` (on POST a
method-override header, a ``_method`` query parameter or form field is honoured),
``wire_method``, ``path`` (percent-decoded, aiohttp's ``request.path``, or the path of an
``X-Original-URL``/``X-Rewrite-URL`` header, under an ``X-Forwarded-Prefix`` header's
path), ``route`` (what the service routes on), ``endpoint`` (``llm``, ``mcp`` or ``http``),
``model`` and ``model_resolved`` (LLM calls), ``rpc`` (one ``{method, tool, path, uri,
name}`` per executed JSON-RPC element; ``path`` is a tool's ``path`` argument), ``action``
(the ``action`` query parameter: the last value, or the first with ``--duplicates
first``, as Django and Flask read it), ``error``.

How it reads:

- route: ``request.path`` with repeated slashes merged, a trailing slash dropped and
  ``;parameters`` cut from each segment, as lenient routers do (aiohttp's
  ``normalize_path_middleware``, servlet-style path parameters). Dot segments stay literal,
  as aiohttp keeps them;
- JSON: keys match exactly; of duplicate keys the last wins (orjson), or the first with
  ``--duplicates first`` (the reading of many other parsers);
- LLM calls: POST to a route ending in ``/chat/completions``, ``/completions``,
  ``/responses``, ``/embeddings`` or ``/messages`` whose JSON object names a model; under
  ``.../deployments/NAME/`` (Azure OpenAI) the deployment is the model, whatever the body
  says; the model served is the trimmed, lower-cased name without a provider prefix;
- MCP: POST to a route ending in ``/mcp``; each element of a message or batch is
  dispatched by its exact method name.

Run: ``python -m haltgate.testbed.standins.reader --port P [--port Q...] --log FILE
[--duplicates first]`` (one server on every port given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

import orjson
from aiohttp import web

__all__ = ["Reader", "create_server", "read_request", "resolve_model"]

OVERRIDE_HEADERS = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")
REWRITE_HEADERS = ("X-Original-URL", "X-Rewrite-URL")
_FORM = "application/x-www-form-urlencoded"
LLM_SUFFIXES = ("/chat/completions", "/completions", "/responses", "/embeddings", "/messages")
TAG_HEADER = "X-Differential-Tag"
MAX_BODY = 8 * 1024 * 1024

Duplicates = Literal["last", "first"]
_SLASHES = re.compile(r"/{2,}")


def resolve_model(model: str) -> str:
    """The model a lenient router serves: trimmed, lower case, no provider prefix."""
    return model.strip().lower().rpartition("/")[2]


def route_of(path: str) -> str:
    """The route a lenient router matches ``path`` (already percent-decoded) on."""
    merged = _SLASHES.sub("/", path)
    segments = [seg.partition(";")[0] for seg in merged.split("/")]
    route = "/".join(segments)
    if len(route) > 1 and route.endswith("/"):
        route = route[:-1]
    return route or "/"


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def parse_json(body: bytes, duplicates: Duplicates) -> Any:
    """Parse like orjson (last duplicate wins) or like a first-wins parser."""
    if duplicates == "last":
        return orjson.loads(body)
    return json.loads(body, object_pairs_hook=_first_wins)


def _first(values: dict[str, list[str]], key: str) -> str:
    found = values.get(key)
    return found[0].strip() if found else ""


def effective_method(method: str, headers: Any, query: str = "", body: bytes = b"") -> str:
    """The method a service executes: on POST an override header, a ``_method`` query
    parameter or a ``_method`` form field counts (Rails, Laravel, Express middleware)."""
    if method != "POST":
        return method
    for name in OVERRIDE_HEADERS:
        value = headers.get(name, "").strip()
        if value:
            return str(value).upper()
    value = _first(parse_qs(query), "_method")
    if not value and str(headers.get("Content-Type", "")).startswith(_FORM):
        value = _first(parse_qs(body.decode("latin-1")), "_method")
    return value.upper() if value else method


def effective_path(path: str, headers: Any) -> str:
    """``path``, or the (decoded) path a rewrite header names (IIS-style rewrites), under
    the path an ``X-Forwarded-Prefix`` header names (Werkzeug's ProxyFix, Spring)."""
    for name in REWRITE_HEADERS:
        value = headers.get(name, "")
        if value:
            path = unquote(urlsplit(value).path)
            break
    prefix = headers.get("X-Forwarded-Prefix", "")
    if prefix:
        path = prefix.rstrip("/") + path
    return path


def query_action(query: str, duplicates: Duplicates) -> str | None:
    """The ``action`` query parameter as a Python framework reads it: the last value
    (Django's ``QueryDict``) or the first (Flask's ``args.get``)."""
    values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "action"]
    if not values:
        return None
    return values[-1] if duplicates == "last" else values[0]


def _rpc_call(msg: Any) -> dict[str, Any] | None:
    if not isinstance(msg, dict):
        return None
    method = msg.get("method")
    if not isinstance(method, str) or not method:
        return None  # a response or garbage: nothing executed
    call: dict[str, Any] = {"method": method}
    params = msg.get("params")
    if isinstance(params, dict):
        if method == "tools/call" and isinstance(params.get("name"), str):
            call["tool"] = params["name"]
            arguments = params.get("arguments")
            if isinstance(arguments, dict) and isinstance(arguments.get("path"), str):
                call["path"] = arguments["path"]
        elif method in ("resources/read", "resources/subscribe") and isinstance(
            params.get("uri"), str
        ):
            call["uri"] = params["uri"]
        elif method == "prompts/get" and isinstance(params.get("name"), str):
            call["name"] = params["name"]
    return call


def read_request(
    method: str,
    path: str,
    headers: Any,
    body: bytes,
    *,
    name: str,
    duplicates: Duplicates,
    query: str = "",
) -> tuple[dict[str, Any], list[Any], bool]:
    """What the service executes for one request, the JSON-RPC ids to answer and whether
    the message was a batch."""
    path = effective_path(path, headers)
    reading: dict[str, Any] = {
        "upstream": name,
        "tag": headers.get(TAG_HEADER, ""),
        "method": effective_method(method, headers, query, body),
        "wire_method": method,
        "path": path,
        "route": route_of(path),
        "endpoint": "http",
        "model": None,
        "model_resolved": None,
        "rpc": None,
        "action": query_action(query, duplicates),
    }
    ids: list[Any] = []
    if reading["method"] != "POST":
        return reading, ids, False
    route = reading["route"]
    is_mcp = route.endswith("/mcp")
    if not is_mcp and not route.endswith(LLM_SUFFIXES):
        return reading, ids, False
    try:
        obj = parse_json(body, duplicates)
    except ValueError as e:
        reading["error"] = f"json: {e}"
        return reading, ids, False
    if is_mcp:
        reading["endpoint"] = "mcp"
        calls = []
        for msg in obj if isinstance(obj, list) else [obj]:
            call = _rpc_call(msg)
            if call is None:
                continue
            calls.append(call)
            if msg.get("id") is not None:
                ids.append(msg["id"])
        reading["rpc"] = calls
        return reading, ids, isinstance(obj, list)
    model = obj.get("model") if isinstance(obj, dict) else None
    segments = route.split("/")
    for i in range(len(segments) - 3, -1, -1):
        if segments[i] == "deployments":
            model = segments[i + 1]  # Azure OpenAI serves the deployment the path names
            break
    if not isinstance(model, str):
        reading["error"] = "no model"
        return reading, ids, False
    reading["endpoint"] = "llm"
    reading["model"] = model
    reading["model_resolved"] = resolve_model(model)
    return reading, ids, False


class Reader:
    """The request handler: reads, logs (one line, flushed), answers."""

    def __init__(self, log: TextIO, *, name: str, duplicates: Duplicates) -> None:
        self._log = log
        self.name = name
        self.duplicates = duplicates

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.content.read(MAX_BODY)
        reading, ids, batch = read_request(
            request.method,
            request.path,
            request.headers,
            body,
            name=self.name,
            duplicates=self.duplicates,
            query=request.raw_path.partition("?")[2],
        )
        self._log.write(json.dumps(reading) + "\n")
        self._log.flush()
        if reading["endpoint"] == "llm":
            return _json(
                {
                    "id": "chatcmpl-diff",
                    "object": "chat.completion",
                    "model": reading["model_resolved"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "ok"},
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    "executed": reading,
                }
            )
        if reading["endpoint"] == "mcp":
            if not ids:
                return web.Response(status=202)
            answers = [
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "result": {"content": [{"type": "text", "text": "ok"}], "isError": False},
                }
                for i in ids
            ]
            return _json(answers if batch else answers[0])
        return _json({"executed": reading})


def _json(obj: Any) -> web.Response:
    return web.Response(body=orjson.dumps(obj), content_type="application/json")


def create_server(log: TextIO, *, name: str = "py", duplicates: Duplicates = "last") -> web.Server:
    """aiohttp's low-level server around a :class:`Reader` (no router: every path is read)."""
    handler: Callable[[web.BaseRequest], Any] = Reader(log, name=name, duplicates=duplicates)
    return web.Server(handler, access_log=None)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m haltgate.testbed.standins.reader")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port",
        type=int,
        action="append",
        required=True,
        help="port to listen on (repeat for several)",
    )
    parser.add_argument(
        "--log",
        type=Path,
        required=True,
        help="file to append one JSON line per executed request to",
    )
    parser.add_argument("--name", default="py")
    parser.add_argument("--duplicates", choices=("last", "first"), default="last")
    args = parser.parse_args()

    async def serve() -> None:
        with args.log.open("a", encoding="utf-8") as log:
            runner = web.ServerRunner(
                create_server(log, name=args.name, duplicates=args.duplicates), handle_signals=True
            )
            await runner.setup()
            for port in args.port:
                await web.TCPSite(runner, args.host, port).start()
            print(f"reader stand-in {args.name} listening on {args.host}:{args.port}", flush=True)
            try:
                await asyncio.Event().wait()
            finally:
                await runner.cleanup()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
