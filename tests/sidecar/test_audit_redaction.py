"""What the sidecar writes to the audit trail is redacted, whatever the guardrails do, and
every refusal has its record (NUL in a tool name, over-deep JSON)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from yarl import URL

from haltgate.governance.audit import AuditRecord
from tests.sidecar.conftest import Running, SidecarFactory, Standins

AWS = "AKIA2E3MBFQXKZ7VJ4NA"
GITHUB = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
OPENAI = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" + "T3BlbkFJ" + "Qr7sT0uV3wX6yZ9aB2cD5eF8"
EMAIL = "canary.person@example.org"
PHONE = "+1 415-555-0132"
PLANTED = (AWS, GITHUB, OPENAI, EMAIL, "415-555-0132")


def chat(text: str) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": text}]}


def rpc_call(name: str, arguments: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


async def outcomes(sc: Running, n: int) -> list[AuditRecord]:
    """The first ``n`` outcome records (they are queued after the answer is sent)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [r for r in sc.audit.records if r.phase == "outcome"]
        if len(found) >= n:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(
        f"expected {n} outcome records, got {[(r.phase, r.code) for r in sc.audit.records]}"
    )


def assert_clean(records: list[AuditRecord]) -> None:
    for record in records:
        line = record.canonical().decode()
        for value in PLANTED:
            assert value not in line, (value, line)


SECRET_TEXT = f"use {AWS} and {GITHUB} and {OPENAI}; mail {EMAIL} or call {PHONE}"


@pytest.mark.parametrize(
    "guardrails",
    [
        {"secrets": {"action": "block", "direction": "request"}},
        {"promptInjection": {}},
        {"pii": {"action": "redact", "direction": "response"}},
        {},
    ],
    ids=["secrets-block", "injection-only", "pii-response-only", "none"],
)
async def test_redacted_payload_whatever_the_guardrails(
    sidecar_factory: SidecarFactory, guardrails: dict[str, Any]
) -> None:
    sc = await sidecar_factory(
        {"spec": {"audit": {"payload": "redacted"}, "guardrails": guardrails}}
    )
    async with aiohttp.ClientSession() as s:
        async with s.post(sc.explicit + "/llm/v1/chat/completions", json=chat(SECRET_TEXT)) as r:
            assert r.status in (200, 403)
        # Refused by the tool rules: the refusal record carries the redacted body too.
        async with s.post(
            sc.explicit + "/mcp", json=rpc_call("delete_file", {"path": SECRET_TEXT})
        ) as r:
            assert (await r.json())["error"]["data"]["code"] == "tool_denied"
        async with s.post(sc.explicit + "/mcp", json=rpc_call("rm_" + AWS, {"note": EMAIL})) as r:
            assert (await r.json())["error"]["data"]["code"] == "tool_not_allowed"
    records = await outcomes(sc, 3)
    assert_clean(sc.audit.records)
    llm = next(r for r in records if r.kind == "llm")
    assert llm.payload["messages"][0]["content"].startswith("use <AWS_KEY_1> and ")
    denied = next(r for r in records if r.code == "tool_denied")
    assert "<EMAIL_1>" in denied.payload["params"]["arguments"]["path"]
    unknown = next(r for r in records if r.code == "tool_not_allowed")
    assert unknown.tool == "rm_<AWS_KEY_1>" and "<AWS_KEY_1>" in (unknown.message or "")


async def test_url_and_message_redacted_in_every_payload_mode(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory({"spec": {"audit": {"payload": "none"}}})
    async with aiohttp.ClientSession() as s:
        async with s.get(
            sc.explicit + f"/api/echo/{AWS}", params={"token": GITHUB, "mail": EMAIL, "tel": PHONE}
        ) as r:
            assert r.status == 200
        async with s.delete(sc.explicit + f"/api/items/{OPENAI}") as r:
            assert r.status == 403  # no rule allows DELETE
    records = await outcomes(sc, 2)
    assert_clean(sc.audit.records)
    assert records[0].target.startswith("GET http://")
    assert "/echo/<AWS_KEY_1>?" in records[0].target
    # The upstream still got the real URL: redaction is for what is stored.
    assert standins.received("api").requests[0].path == f"/echo/{AWS}"


async def test_full_payload_is_kept_but_writable(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory({"spec": {"audit": {"payload": "full"}}})
    async with (
        aiohttp.ClientSession() as s,
        s.post(sc.explicit + "/llm/v1/chat/completions", json=chat(f"mail {EMAIL}")) as r,
    ):
        assert r.status == 200
    (record,) = await outcomes(sc, 1)
    assert record.payload["messages"][0]["content"] == f"mail {EMAIL}"


def _nested(depth: int) -> Any:
    doc: Any = "bottom"
    for _ in range(depth):
        doc = [doc]
    return doc


async def test_every_refusal_is_audited(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory({"spec": {"audit": {"payload": "redacted"}}})
    deep_mcp = orjson.dumps(rpc_call("echo", {"text": _nested(200)}))
    deep_llm = orjson.dumps({**chat("hi"), "metadata": _nested(250)})
    async with aiohttp.ClientSession() as s:
        async with s.post(sc.explicit + "/mcp", json=rpc_call("ec\x00ho", {})) as r:
            assert (await r.json())["error"]["data"]["code"] == "tool_not_allowed"
        async with s.post(
            sc.explicit + "/mcp", data=deep_mcp, headers={"content-type": "application/json"}
        ) as r:
            assert (await r.json())["error"]["data"]["code"] == "json_too_deep"
        async with s.post(sc.explicit + "/llm/v1/chat/completions", data=deep_llm) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "json_too_deep"
        async with s.post(sc.explicit + "/mcp", json=rpc_call("x" * 100_000, {})) as r:
            assert (await r.json())["error"]["data"]["code"] == "tool_not_allowed"
    records = await outcomes(sc, 4)
    assert [(r.decision, r.code) for r in records] == [
        ("deny", "tool_not_allowed"),
        ("error", "json_too_deep"),
        ("error", "json_too_deep"),
        ("deny", "tool_not_allowed"),
    ]
    assert records[0].tool == "ec\\u0000ho"
    assert records[3].tool == "x" * 256 + "<TRUNCATED>"
    assert not standins.received("mcp").requests and not standins.received("llm").requests


async def test_payload_nested_below_the_limit_is_truncated_not_lost(
    sidecar_factory: SidecarFactory,
) -> None:
    sc = await sidecar_factory({"spec": {"audit": {"payload": "full"}}})
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            sc.explicit + "/llm/v1/chat/completions",
            data=orjson.dumps({**chat("hi"), "metadata": _nested(120)}),
        ) as r,
    ):
        assert r.status == 200
    (record,) = await outcomes(sc, 1)
    assert "<TRUNCATED: nested too deeply>" in orjson.dumps(record.payload).decode()


async def test_refusals_without_a_target_are_audited(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    async with aiohttp.ClientSession() as s:
        async with s.post(sc.explicit + f"/nope/{AWS}/v1/chat/completions", json=chat("hi")) as r:
            assert r.status == 404
        async with s.get(URL(sc.explicit + "/api/a/%2e%2e/%2e%2e/etc/passwd", encoded=True)) as r:
            assert r.status == 400
    records = await outcomes(sc, 2)
    assert [(r.decision, r.code) for r in records] == [
        ("error", "unknown_upstream"),
        ("error", "invalid_path"),
    ]
    assert records[0].target == "POST /nope/<AWS_KEY_1>/v1/chat/completions"
    assert_clean(records)


async def test_transparent_refusals_are_audited(sidecar_factory: SidecarFactory) -> None:
    from haltgate.sidecar.startup import Listen

    sc = await sidecar_factory(transparent=Listen("127.0.0.1", 0))
    host, port = sc.sidecar.addresses["transparent"]
    # Straight to the transparent port, not redirected: refused before any request.
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    deadline = time.monotonic() + 5
    while not [r for r in sc.audit.records if r.phase == "connection"]:
        assert time.monotonic() < deadline, sc.audit.records
        await asyncio.sleep(0.02)
    (record,) = [r for r in sc.audit.records if r.phase == "connection"]
    assert (record.decision, record.kind) == ("deny", "connection")
    assert record.code in ("not_redirected", "no_original_destination")


async def test_malformed_connect_is_audited(sidecar_factory: SidecarFactory) -> None:
    from tests.sidecar.test_bad_input import exchange

    sc = await sidecar_factory()
    answer = await exchange(sc.explicit, b"CONNECT " + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 4")
    deadline = time.monotonic() + 5
    while not [r for r in sc.audit.records if r.phase == "connection"]:
        assert time.monotonic() < deadline, sc.audit.records
        await asyncio.sleep(0.02)
    (record,) = [r for r in sc.audit.records if r.phase == "connection"]
    assert (record.decision, record.target) == ("error", "CONNECT (unparsed)")


async def test_state_keeps_no_secret_in_tool_names(
    sidecar_factory: SidecarFactory, tmp_path: Path
) -> None:
    sc = await sidecar_factory(
        {
            "spec": {
                "budgets": {"distinctTools": {"limit": 100}},
                "tools": {"rules": [{"name": "any-mcp", "action": "allow", "kind": "mcp"}]},
            }
        },
        state_dir=tmp_path / "state",
    )
    async with (
        aiohttp.ClientSession() as s,
        s.post(sc.explicit + "/mcp", json=rpc_call(f"lookup_{AWS}", {"q": EMAIL})) as r,
    ):
        assert r.status == 200
    await outcomes(sc, 1)
    await sc.sidecar.stop()
    state = b"".join(p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file())
    assert state and AWS.encode() not in state and EMAIL.encode() not in state


def test_payload_redaction_is_bounded() -> None:
    from haltgate.governance.audit.redact import OVER_BUDGET, AuditScrubber

    body = {
        "messages": [
            {"role": "user", "content": f"note {i} " + "words " * 2000 + EMAIL} for i in range(20)
        ]
    }
    out = AuditScrubber(redact=True).payload(body)
    contents = [m["content"] for m in out["messages"]]
    assert EMAIL not in orjson.dumps(out).decode()
    assert contents[0].endswith("<EMAIL_1>") and contents[-1] == OVER_BUDGET
