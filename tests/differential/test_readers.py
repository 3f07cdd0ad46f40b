"""The bed can see a divergence: each upstream reader, asked directly (no sidecar), reads
the tricky spellings the way its kind of server does. Without this, a reader that
happened to read like the sidecar would make every differential test pass vacuously."""

from __future__ import annotations

from typing import Any

import pytest

from tests.differential.corpus import chat
from tests.differential.harness import Bed, Request


def read(
    bed: Bed,
    upstream: str,
    kind: str,
    method: str,
    target: str,
    body: bytes = b"",
    headers: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    ex = bed.send(Request(f"{upstream}-{kind}", method, target, body, headers), direct=True)
    assert len(ex.executed) == 1, ex.executed
    return ex.executed[0]


@pytest.mark.parametrize("upstream", ["go", "py", "pyfirst"])
def test_every_reader_decodes_paths_and_honours_overrides(bed: Bed, upstream: str) -> None:
    assert read(bed, upstream, "api", "GET", "/api/%61dmin/x")["route"] == "/api/admin/x"
    assert read(bed, upstream, "api", "GET", "/api/admin%2Fx")["route"] == "/api/admin/x"
    assert read(bed, upstream, "api", "GET", "/api//admin/x")["route"] == "/api/admin/x"
    for header in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"):
        reading = read(bed, upstream, "api", "POST", "/api/items", b"{}", ((header, "delete"),))
        assert (reading["wire_method"], reading["method"]) == ("POST", "DELETE")
    assert read(bed, upstream, "api", "POST", "/api/items?_method=PUT", b"{}")["method"] == "PUT"
    rewritten = read(
        bed, upstream, "api", "GET", "/api/items", headers=(("X-Original-URL", "/api/admin/x"),)
    )
    assert rewritten["route"] == "/api/admin/x"
    llm = read(bed, upstream, "llm", "POST", "/v1/chat/%63ompletions", chat(("model", "GPT-5")))
    assert (llm["endpoint"], llm["model"], llm["model_resolved"]) == ("llm", "GPT-5", "gpt-5")


def test_go_reads_json_keys_case_insensitively_last_wins(bed: Bed) -> None:
    llm = read(
        bed,
        "go",
        "llm",
        "POST",
        "/v1/chat/completions",
        chat(("model", "gpt-4o-mini"), ("Model", "gpt-5")),
    )
    assert llm["model"] == "gpt-5"
    mcp = read(
        bed,
        "go",
        "mcp",
        "POST",
        "",
        b'{"jsonrpc":"2.0","id":1,"method":"ping",'
        b'"Method":"tools/call","params":{"name":"echo","NAME":"delete_file"}}',
    )
    assert mcp["rpc"] == [{"method": "tools/call", "tool": "delete_file"}]
    long_s = read(
        bed,
        "go",
        "mcp",
        "POST",
        "",
        '{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        '"params":{"name":"echo"},"param\u017f":{"name":"delete_file"}}'.encode(),
    )
    assert long_s["rpc"] == [{"method": "tools/call", "tool": "delete_file"}]
    # path.Clean: dot segments resolved, trailing slash dropped; ';' kept
    assert read(bed, "go", "api", "GET", "/api/x/../admin/")["route"] == "/api/admin"
    assert read(bed, "go", "api", "GET", "/api/admin;x")["route"] == "/api/admin;x"


@pytest.mark.parametrize(("upstream", "wins"), [("py", "last"), ("pyfirst", "first")])
def test_python_readers_match_keys_exactly(bed: Bed, upstream: str, wins: str) -> None:
    collision = read(
        bed,
        upstream,
        "llm",
        "POST",
        "/v1/chat/completions",
        chat(("model", "gpt-4o-mini"), ("Model", "gpt-5")),
    )
    assert collision["model"] == "gpt-4o-mini"
    duplicate = read(
        bed,
        upstream,
        "llm",
        "POST",
        "/v1/chat/completions",
        chat(("model", "gpt-5"), ("model", "gpt-4o-mini")),
    )
    assert duplicate["model"] == {"first": "gpt-5", "last": "gpt-4o-mini"}[wins]
    tool = read(
        bed,
        upstream,
        "mcp",
        "POST",
        "",
        b'{"jsonrpc":"2.0","id":1,"method":'
        b'"tools/call","params":{"name":"delete_file","name":"echo"}}',
    )
    assert tool["rpc"][0]["tool"] == {"first": "delete_file", "last": "echo"}[wins]
    # the lenient router: ';' parameters and a trailing slash dropped, dot segments kept
    assert read(bed, upstream, "api", "GET", "/api/admin;x/y/")["route"] == "/api/admin/y"
    assert read(bed, upstream, "api", "GET", "/api/x/../admin")["route"] == "/api/x/../admin"


@pytest.mark.parametrize(
    ("upstream", "wins"), [("go", "first"), ("py", "last"), ("pyfirst", "first")]
)
def test_readers_read_the_query_and_forwarded_prefix(bed: Bed, upstream: str, wins: str) -> None:
    assert read(bed, upstream, "api", "GET", "/api/items?action=%64elete")["action"] == "delete"
    repeated = read(bed, upstream, "api", "GET", "/api/items?action=list&action=delete")
    assert repeated["action"] == {"first": "list", "last": "delete"}[wins]
    assert read(bed, upstream, "api", "GET", "/api/items?x=a+b")["action"] is None
    prefixed = read(
        bed, upstream, "api", "GET", "/x", headers=(("X-Forwarded-Prefix", "/api/admin/"),)
    )
    assert prefixed["route"] == "/api/admin/x"
