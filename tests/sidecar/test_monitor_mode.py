"""``spec.enforcement: monitor`` through a real sidecar: every control runs and is audited
and counted as a refusal it would make, nothing is refused; the same policy under
``enforce`` refuses; the boundary (framing, body limits, strict JSON) refuses in both."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from haltgate.governance.audit import AuditRecord
from haltgate.governance.audit.explain import explain, render_text
from haltgate.governance.audit.policies import LoadedPolicy, PolicyStore, load_policy_bytes
from haltgate.governance.audit.replay import replay_run
from haltgate.governance.simulate import simulate
from haltgate.sidecar.pipeline_state import PipelineSettings
from tests.sidecar.conftest import (
    ADMIN_TOKEN,
    Running,
    SidecarFactory,
    Standins,
    base_policy,
    merge,
)
from tests.sidecar.test_bad_input import exchange

CHAT = {
    "model": "gpt-4o-mini",
    "max_tokens": 2,
    "messages": [{"role": "user", "content": "hello"}],
}
SECRET = "use key AKIA2E3MBFQXKZ7VJ4NA with secret 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"


def policy(mode: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"spec": {"enforcement": mode, **(spec or {})}}


def outcomes(sc: Running) -> list[AuditRecord]:
    return [r for r in sc.audit.records if r.phase == "outcome"]


async def metric_lines(sc: Running, name: str) -> list[str]:
    async with aiohttp.ClientSession() as s, s.get(sc.metrics + "/metrics") as r:
        text = await r.text()
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def explained(sc: Running, decision_id: str) -> dict[str, Any]:
    records = [r.to_dict() for r in sc.audit.records if r.decision_id == decision_id]
    return explain(records, PolicyStore.from_files([sc.policy_path]))


def enforced(sc: Running) -> LoadedPolicy:
    """The sidecar's policy with ``enforcement: enforce`` (what the switch would be)."""
    doc = yaml.safe_load(sc.policy_path.read_text())
    doc["spec"]["enforcement"] = "enforce"
    return load_policy_bytes(yaml.safe_dump(doc).encode(), "enforced.yaml")


async def post_chat(s: aiohttp.ClientSession, sc: Running, body: Any = CHAT) -> int:
    async with s.post(sc.explicit + "/llm/v1/chat/completions", data=orjson.dumps(body)) as r:
        await r.read()
        return r.status


# --------------------------------------------------------------------------- tool rules


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
async def test_tool_rule_deny(
    sidecar_factory: SidecarFactory, standins: Standins, mode: str
) -> None:
    sc = await sidecar_factory(policy(mode))
    async with aiohttp.ClientSession() as s, s.delete(sc.explicit + "/api/echo/x") as r:
        status = r.status
        decision_id = r.headers["x-haltgate-decision-id"]
    forwarded = [q for q in standins.received("api").requests if q.method == "DELETE"]
    (record,) = outcomes(sc)
    if mode == "enforce":
        assert status == 403 and not forwarded
        assert (record.decision, record.code) == ("deny", "tool_not_allowed")
        assert record.enforcement is None and record.would_refuse is None
        return
    assert status == 200 and len(forwarded) == 1
    assert (record.decision, record.code, record.enforcement) == ("allow", None, "monitor")
    assert record.would_refuse is not None
    assert record.would_refuse["stage"] == "tools"
    assert record.would_refuse["code"] == "tool_not_allowed"
    assert record.would_refuse["failure_type"] == "SAFETY"
    # The intent (written before forwarding) says it too.
    (intent,) = [r for r in sc.audit.records if r.phase == "intent"]
    assert intent.would_refuse == record.would_refuse
    assert any(
        'stage="tools"' in line and 'code="tool_not_allowed"' in line and line.endswith(" 1.0")
        for line in await metric_lines(sc, "haltgate_would_refuse_total")
    )
    report = simulate(
        [r.to_dict() for r in sc.audit.records],
        enforced(sc),
        PolicyStore.from_files([sc.policy_path]),
    )
    assert [(c["decision_id"], c["simulated"]) for c in report.changes] == [
        (decision_id, "deny (tool_not_allowed)")
    ]
    doc = explained(sc, decision_id)
    assert doc["match"] is True, doc["mismatches"]
    assert doc["decision"]["enforcement"] == "monitor"
    assert doc["decision"]["would_refuse"]["code"] == "tool_not_allowed"
    assert "WOULD REFUSE at tools (tool_not_allowed, SAFETY)" in render_text(doc)


async def test_mcp_tool_and_message_rules_in_monitor(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """An MCP batch: a denied tool and a resource spec.mcp denies, each noted, both sent."""
    sc = await sidecar_factory(policy("monitor", {"mcp": {"resources": {"default": "deny"}}}))
    batch = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "delete_file", "arguments": {"path": "/tmp/x"}},
        },
        {"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "file:///etc"}},
    ]
    async with (
        aiohttp.ClientSession() as s,
        s.post(sc.explicit + "/mcp", data=orjson.dumps(batch)) as r,
    ):
        assert r.status == 200
        answer = await r.json()
    assert not any("error" in m and "haltgate" in orjson.dumps(m).decode() for m in answer)
    assert len(standins.received("mcp").requests) == 1
    (record,) = outcomes(sc)
    assert record.decision == "allow" and record.would_refuse is not None
    assert record.would_refuse["stage"] == "tools"
    assert [a["stage"] for a in record.would_refuse["also"]] == ["mcp"]


# --------------------------------------------------------------------------- budgets


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
async def test_budget_exhaustion(
    sidecar_factory: SidecarFactory, standins: Standins, mode: str
) -> None:
    sc = await sidecar_factory(policy(mode, {"budgets": {"calls": {"limit": 2}}}))
    async with aiohttp.ClientSession() as s:
        statuses = [await post_chat(s, sc) for _ in range(4)]
        async with s.get(
            sc.admin + "/budgets", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as r:
            budgets = await r.json()
    forwarded = len(standins.received("llm").requests)
    if mode == "enforce":
        assert statuses == [200, 200, 429, 429] and forwarded == 2
        assert budgets["halted"] is True
        return
    assert statuses == [200, 200, 200, 200] and forwarded == 4
    # Real usage is metered past the limit; the would-be halt is not applied.
    assert budgets["budget"]["calls"]["used"] == 4
    assert budgets["halted"] is False
    records = outcomes(sc)
    assert [r.decision for r in records] == ["allow"] * 4
    assert [r.would_refuse["code"] if r.would_refuse else None for r in records] == [
        None,
        None,
        "calls_exhausted",
        "calls_exhausted",
    ]
    assert records[2].would_refuse is not None
    assert records[2].would_refuse["failure_type"] == "EXHAUSTION"
    assert all(r.enforcement == "monitor" for r in records)
    doc = explained(sc, records[2].decision_id)
    assert doc["match"] is True, doc["mismatches"]
    assert doc["replayed"]["decision"]["code"] == "calls_exhausted"
    store = PolicyStore.from_files([sc.policy_path])
    run = [r.to_dict() for r in sc.audit.records]
    assert replay_run(run, store)["match"] is True
    # A monitor record edited to hide what the budget would have done is a mismatch.
    tampered = [
        {**r, "would_refuse": None, "enforcement": None}
        if r["decision_id"] == records[2].decision_id
        else r
        for r in run
    ]
    report = replay_run(tampered, store)
    assert report["match"] is False
    assert report["first_mismatch"]["decision_id"] == records[2].decision_id
    # Simulating the switch to enforce: exactly the two calls it would refuse change.
    enforce = simulate(run, enforced(sc), store)
    assert [(c["decision_id"], c["recorded"], c["simulated"]) for c in enforce.changes] == [
        (r.decision_id, "allow", "deny (calls_exhausted)") for r in records[2:]
    ]
    lines = await metric_lines(sc, "haltgate_would_refuse_total")
    assert any('stage="budget"' in x and 'code="calls_exhausted"' in x for x in lines)
    assert not [x for x in await metric_lines(sc, "haltgate_halts_total") if not x.endswith(" 0.0")]


# --------------------------------------------------------------------------- guardrails


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
async def test_guardrail_block(
    sidecar_factory: SidecarFactory, standins: Standins, mode: str
) -> None:
    sc = await sidecar_factory(
        policy(mode, {"guardrails": {"secrets": {"direction": "request", "action": "block"}}})
    )
    body = {**CHAT, "messages": [{"role": "user", "content": SECRET}]}
    async with aiohttp.ClientSession() as s:
        status = await post_chat(s, sc, body)
    forwarded = standins.received("llm").requests
    (record,) = outcomes(sc)
    if mode == "enforce":
        assert status == 403 and not forwarded
        assert record.code is not None and record.code.startswith("guardrail_")
        return
    assert status == 200 and len(forwarded) == 1
    # Forwarded as it came: monitor mode changes nothing.
    assert forwarded[0].body == orjson.dumps(body)
    assert record.would_refuse is not None
    assert record.would_refuse["stage"] == "guardrails"
    assert record.would_refuse["code"].startswith("guardrail_")
    assert record.findings  # what would have blocked it


async def test_response_guardrail_in_monitor(sidecar_factory: SidecarFactory) -> None:
    """A whole answer and a stream a guardrail would block reach the agent unchanged."""
    sc = await sidecar_factory(
        policy("monitor", {"guardrails": {"secrets": {"direction": "response", "action": "block"}}})
    )
    text = SECRET + " " + "filler " * 100
    async with aiohttp.ClientSession() as s:
        for stream in (False, True):
            body = {**CHAT, "stream": stream}
            async with s.post(
                sc.explicit + "/llm/v1/chat/completions",
                data=orjson.dumps(body),
                headers={"x-standin-text": text},
            ) as r:
                assert r.status == 200
                got = await r.read()
            assert b"event: error" not in got
            assert got.count(b"filler") == 100, stream
    records = outcomes(sc)
    assert len(records) == 2
    for record in records:
        assert record.decision == "allow"
        assert record.would_refuse is not None and record.would_refuse["stage"] == "response"
    # Explain shows it although the intent (written before the answer) could not.
    doc = explained(sc, records[0].decision_id)
    assert doc["match"] is True, doc["mismatches"]
    assert doc["decision"]["would_refuse"]["stage"] == "response"


# --------------------------------------------------------------------------- OPA

REGO = """
package haltgate

import rego.v1

default decision := {"allow": true}

decision := {"allow": false, "reason": "big models need approval", "failure_type": "SAFETY"} if {
    input.request.kind == "llm"
    startswith(input.request.model, "gpt-5")
}
"""


@pytest.mark.opa
@pytest.mark.parametrize("mode", ["enforce", "monitor"])
async def test_opa_deny(
    sidecar_factory: SidecarFactory, standins: Standins, opa_server: str, mode: str
) -> None:
    sc = await sidecar_factory(policy(mode, {"opa": {"rego": REGO}}), opa_url=opa_server)
    async with aiohttp.ClientSession() as s:
        status = await post_chat(s, sc, {**CHAT, "model": "gpt-5"})
    forwarded = standins.received("llm").requests
    (record,) = outcomes(sc)
    if mode == "enforce":
        assert status == 403 and not forwarded and record.code == "opa_denied"
        return
    assert status == 200 and len(forwarded) == 1
    assert record.decision == "allow" and record.would_refuse is not None
    assert (record.would_refuse["stage"], record.would_refuse["code"]) == ("opa", "opa_denied")
    doc = explained(sc, record.decision_id)
    assert doc["match"] is True, doc["mismatches"]


# --------------------------------------------------------------------------- the boundary


async def test_boundary_refuses_in_monitor(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """Framing, body limits, strict JSON and encoded bodies are refused in monitor mode
    too: forwarding them would let the upstream read a request the rules did not."""
    sc = await sidecar_factory(policy("monitor", {"limits": {"maxBodyBytes": 1024}}))
    answer = await exchange(
        sc.explicit,
        b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")) or answer == b"", answer
    async with aiohttp.ClientSession() as s:
        for data, headers, status, code in (
            (b'{"model":"a","model":"b","messages":[]}', {}, 400, "ambiguous_json"),
            (b"{", {}, 400, "invalid_json"),
            (orjson.dumps({**CHAT, "pad": "x" * 2048}), {}, 413, "body_too_large"),
            (orjson.dumps(CHAT), {"Content-Encoding": "gzip"}, 400, "encoded_request_body"),
        ):
            async with s.post(
                sc.explicit + "/llm/v1/chat/completions", data=data, headers=headers
            ) as r:
                assert r.status == status, code
                assert (await r.json())["error"]["code"] == code
    assert not standins.received("llm").requests
    assert not standins.received("api").requests
    assert all(r.would_refuse is None for r in sc.audit.records)


# --------------------------------------------------------------------------- reload


async def status_enforcement(sc: Running) -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.get(sc.admin + "/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r,
    ):
        return str((await r.json())["enforcement"])


async def test_monitor_then_enforce_by_reload(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """Monitor meters past the limit; switched to enforce (hot reload), the next call is
    refused on what monitor mode metered; the admin status says which mode decides."""
    doc = merge(base_policy(standins), policy("monitor", {"budgets": {"calls": {"limit": 2}}}))
    sc = await sidecar_factory({"spec": doc["spec"]})
    assert await status_enforcement(sc) == "monitor"
    async with aiohttp.ClientSession() as s:
        assert [await post_chat(s, sc) for _ in range(3)] == [200, 200, 200]
        sc.write_policy(merge(doc, {"spec": {"enforcement": "enforce"}}))
        for _ in range(100):  # bounded: the reload interval is 0.1 s
            if await status_enforcement(sc) == "enforce":
                break
            await asyncio.sleep(0.05)
        assert await status_enforcement(sc) == "enforce"
        assert await post_chat(s, sc) == 429
    assert len(standins.received("llm").requests) == 3
    last = outcomes(sc)[-1]
    assert (last.decision, last.code, last.enforcement) == ("deny", "calls_exhausted", None)


# --------------------------------------------------------------------------- flows


async def test_flow_rule_in_monitor(sidecar_factory: SidecarFactory, standins: Standins) -> None:
    """A write after untrusted content is noted (flows), not refused, and gets no approval
    header."""
    flows = [
        {
            "name": "web-to-writes",
            "sources": [{"upstreams": ["api"], "paths": ["/pages/**"]}],
            "sinks": [{"kind": "http", "methods": ["POST"]}],
        }
    ]
    sc = await sidecar_factory(policy("monitor", {"flows": flows}))
    async with aiohttp.ClientSession() as s:
        async with s.get(sc.explicit + "/api/pages/offer") as r:
            assert r.status == 200
        async with s.post(sc.explicit + "/api/items", json={"addresses": ["1 Elm St"]}) as r:
            assert r.status == 201
            assert not [h for h in r.headers if h.lower().startswith("x-haltgate-approval")]
    assert any(q.method == "POST" for q in standins.received("api").requests)
    last = outcomes(sc)[-1]
    assert last.decision == "allow" and last.would_refuse is not None
    assert last.would_refuse["stage"] == "flows"


# --------------------------------------------------------------------------- streams


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
async def test_stream_over_the_token_budget(sidecar_factory: SidecarFactory, mode: str) -> None:
    """A stream that crosses the token budget is cut under enforce; relayed whole in
    monitor mode, with the cut noted and the tokens it really used metered."""
    body = {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "go"}],
    }
    raw = orjson.dumps(body)
    sc = await sidecar_factory(
        policy(mode, {"budgets": {"tokens": {"limit": len(raw) + 2 + 3}}}),
        pipeline=PipelineSettings(default_max_output_tokens=2),
    )
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            sc.explicit + "/llm/v1/chat/completions",
            data=raw,
            headers={"x-standin-tokens": "200"},
        ) as r,
    ):
        assert r.status == 200
        via = await r.read()
    (record,) = outcomes(sc)
    if mode == "enforce":
        assert b"event: error" in via and b"tok150" not in via
        assert (record.decision, record.code) == ("deny", "tokens_exhausted")
        return
    assert b"event: error" not in via and b"tok150" in via
    assert record.decision == "allow" and record.would_refuse is not None
    assert (record.would_refuse["stage"], record.would_refuse["code"]) == (
        "budget",
        "tokens_exhausted",
    )
    assert record.usage is not None and record.usage["output_tokens"] >= 200
    assert sc.sidecar.governor is not None
    assert sc.sidecar.governor.snapshot()["budget"]["tokens"]["used"] > len(raw) + 5


async def test_operator_halt_applies_in_monitor(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """A halt from outside (the admin API) is not a control's decision: it refuses in
    monitor mode too, and lifting it lets calls through again."""
    sc = await sidecar_factory(policy("monitor"))
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession() as s:
        async with s.post(
            sc.admin + "/halt", json={"message": "stop now", "actor": "ops"}, headers=auth
        ) as r:
            assert r.status == 200
        assert await post_chat(s, sc) == 423  # halted (Locked), as under enforce
        async with s.post(sc.admin + "/lift", json={"actor": "ops"}, headers=auth) as r:
            assert r.status == 200
        assert await post_chat(s, sc) == 200
    assert len(standins.received("llm").requests) == 1
    refused = outcomes(sc)[0]
    assert (refused.decision, refused.failure_type) == ("deny", "EXTERNAL")
    assert refused.would_refuse is None and refused.enforcement == "monitor"


async def test_mcp_batch_over_budget_is_metered_per_message(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """An MCP batch the budget would refuse goes on and costs one call per tool call."""
    sc = await sidecar_factory(policy("monitor", {"budgets": {"calls": {"limit": 2}}}))
    batch = [
        {
            "jsonrpc": "2.0",
            "id": n,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": f"hi {n}"}},
        }
        for n in range(3)
    ]
    async with (
        aiohttp.ClientSession() as s,
        s.post(sc.explicit + "/mcp", data=orjson.dumps(batch)) as r,
    ):
        assert r.status == 200
        assert len(await r.json()) == 3
    (record,) = outcomes(sc)
    assert record.would_refuse is not None
    assert (record.would_refuse["stage"], record.would_refuse["code"]) == (
        "budget",
        "calls_exhausted",
    )
    assert sc.sidecar.governor is not None
    assert sc.sidecar.governor.snapshot()["budget"]["calls"]["used"] == 3.0
