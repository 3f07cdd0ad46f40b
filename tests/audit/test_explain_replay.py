"""Explain, replay and simulate from the audit trail of a real ``haltgate sidecar`` process.

The sidecar writes its real spool; ``haltgate audit explain``/``replay`` re-derive the
decisions from it offline, then from PostgreSQL after ``haltgate audit ship``, and the
audit API explains one too; ``haltgate policy simulate`` re-runs the traffic through
stricter, looser and changed policies. A record edited after the fact (and re-hashed, so the chain
itself still verifies) makes replay report the mismatch and exit 1.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from haltgate.governance.audit.api import create_app
from haltgate.governance.audit.policies import PolicyStore
from haltgate.governance.audit.record import GENESIS_HASH, canonical_json
from haltgate.governance.audit.spool import (
    MAGIC,
    encode_frame,
    iter_frames,
    list_segments,
    segment_path,
)
from tests.audit.conftest import AuditDatabase
from tests.sidecar.cli_process import (
    REPO,
    haltgate,
    spawn_pod_sidecar,
    wait_ready,
)
from tests.sidecar.conftest import Standins, base_policy, merge, serving_standins

TOKEN = "explain-api-token-0123456789"

POLICY_EXTRA: dict[str, Any] = {
    "spec": {
        "budgets": {"tokens": {"limit": 4000}, "calls": {"limit": 50}},
    }
}


@pytest.fixture
async def upstreams() -> AsyncIterator[Standins]:
    async with serving_standins() as s:
        yield s


def chat(max_tokens: int) -> dict[str, Any]:
    return {
        "model": "m",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "hello"}],
    }


def rpc(name: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": {"text": "x"}},
    }


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        haltgate(*args), cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def spool_docs(audit: Path) -> list[dict[str, Any]]:
    docs = []
    for number in list_segments(audit):
        frames, _, problem = iter_frames(segment_path(audit, number).read_bytes(), number)
        assert problem is None
        docs += [orjson.loads(f.data) for f in frames if not f.is_checkpoint]
    return docs


def tamper(audit: Path, decision_id: str) -> None:
    """Shrink the recorded worst case of the refused call (so it would have fit) and
    re-hash its chain from there on, as someone with write access to the spool would."""
    heads: dict[str, str] = {}
    for number in list_segments(audit):
        path = segment_path(audit, number)
        frames, _, _ = iter_frames(path.read_bytes(), number)
        out = [MAGIC]
        for frame in frames:
            if frame.is_checkpoint:
                out.append(path.read_bytes()[frame.offset : frame.end])
                continue
            doc = orjson.loads(frame.data)
            if doc["decision_id"] == decision_id and doc.get("replay", {}).get("budget"):
                doc["replay"]["budget"]["event"]["max_output_tokens"] = 2
            doc["prev_hash"] = heads.get(doc["chain_id"], GENESIS_HASH)
            body = {k: v for k, v in doc.items() if k != "hash"}
            doc["hash"] = hashlib.sha256(canonical_json(body)).hexdigest()
            heads[doc["chain_id"]] = doc["hash"]
            out.append(encode_frame(canonical_json(doc), frame.time))
        path.write_bytes(b"".join(out))


async def test_explain_and_replay_a_real_run(
    upstreams: Standins, audit_db: AuditDatabase, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(merge(base_policy(upstreams), POLICY_EXTRA)))
    state = tmp_path / "state"
    proc, ports = await spawn_pod_sidecar(policy, state)
    base = f"http://127.0.0.1:{ports['explicit']}"
    ids: dict[str, str] = {}
    try:
        await wait_ready(f"http://127.0.0.1:{ports['admin']}/readyz", proc)
        async with aiohttp.ClientSession() as s:
            for name, url, body in (
                ("small", "/llm/v1/chat/completions", chat(2)),
                ("echo", "/mcp", rpc("echo")),
                ("delete", "/mcp", rpc("delete_file")),
                ("too-big", "/llm/v1/chat/completions", chat(5000)),
                ("after", "/llm/v1/chat/completions", chat(3)),
                (
                    "resource",
                    "/mcp",
                    {
                        "jsonrpc": "2.0",
                        "id": 2,
                        "method": "resources/read",
                        "params": {"uri": "file:///etc/hosts"},
                    },
                ),
            ):
                async with s.post(base + url, json=body) as r:
                    await r.read()
                    ids[name] = r.headers["x-haltgate-decision-id"]
                    if name == "too-big":
                        assert r.status == 429 or r.status == 403, r.status
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    audit = state / "audit"
    docs = spool_docs(audit)
    run_id = docs[0]["run_id"]
    # No payload value in the replay inputs: the prompt never appears in them.
    assert all(b"hello" not in orjson.dumps(d.get("replay")) for d in docs)

    # explain, offline from the spool: the budget refusal, re-derived with its numbers.
    done = cli(
        "audit", "explain", ids["too-big"], "--spool", str(audit), "--policy", str(policy), "--json"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    doc = orjson.loads(done.stdout)
    assert doc["match"] is True
    assert doc["decided_by"] == "budget"
    assert doc["decision"]["decision"] == "deny"
    assert doc["replayed"]["decision"]["allowed"] is False
    assert doc["replayed"]["decision"]["code"] == doc["decision"]["code"]
    tokens_before = doc["replayed"]["before"]["tokens"]
    assert tokens_before["limit"] == 4000 and tokens_before["reserved"] == 0
    assert [s["stage"] for s in doc["stages"]] == ["tools", "guardrails", "budget"]

    # The tool-rule refusal: decided by the tools stage, consistent, no engine step.
    done = cli(
        "audit", "explain", ids["delete"], "--spool", str(audit), "--policy", str(policy), "--json"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    doc = orjson.loads(done.stdout)
    assert doc["decided_by"] == "tools" and doc["match"] is True
    assert doc["stages"][0] == {"stage": "tools", "rule": "no-delete-tool", "result": "deny"}

    # A message spec.mcp refuses (no resource rule allows it): decided by that stage.
    done = cli(
        "audit",
        "explain",
        ids["resource"],
        "--spool",
        str(audit),
        "--policy",
        str(policy),
        "--json",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    doc = orjson.loads(done.stdout)
    assert doc["decided_by"] == "mcp" and doc["match"] is True
    assert doc["decision"]["decision"] == "deny"

    # An allowed call, as text.
    done = cli("audit", "explain", ids["small"], "--spool", str(audit), "--policy", str(policy))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "match: yes" in done.stdout and "tokens" in done.stdout

    # The whole run replays.
    done = cli("audit", "replay", run_id, "--spool", str(audit), "--policy", str(policy), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = orjson.loads(done.stdout)
    assert report["match"] is True and report["budget_steps"] == 4

    # simulate: the same policy changes nothing (exit 0).
    done = cli(
        "policy", "simulate", str(policy), "--spool", str(audit), "--policy", str(policy), "--json"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sim = orjson.loads(done.stdout)
    assert sim["changed"] == 0 and sim["undecidable"] == 0 and sim["decisions"] == 6

    # An empty selection proves nothing: exit 2, not "nothing changes".
    done = cli(
        "policy",
        "simulate",
        str(policy),
        "--spool",
        str(audit),
        "--policy",
        str(policy),
        "--until",
        "2020-01-01",
    )
    assert done.returncode == 2 and "no recorded decision" in done.stderr

    # A token limit one short of what the last call needed refuses exactly that call.
    after = orjson.loads(
        cli(
            "audit",
            "explain",
            ids["after"],
            "--spool",
            str(audit),
            "--policy",
            str(policy),
            "--json",
        ).stdout
    )["replayed"]
    limit = int(after["before"]["tokens"]["used"] + after["worst_case"]["tokens"]) - 1
    strict = tmp_path / "strict.yaml"
    strict.write_text(
        yaml.safe_dump(
            merge(
                base_policy(upstreams),
                {"spec": {"budgets": {"tokens": {"limit": limit}, "calls": {"limit": 50}}}},
            )
        )
    )
    done = cli(
        "policy", "simulate", str(strict), "--spool", str(audit), "--policy", str(policy), "--json"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    sim = orjson.loads(done.stdout)
    assert [c["decision_id"] for c in sim["changes"]] == [ids["after"]]
    assert sim["changes"][0]["recorded"] == "allow"
    assert sim["changes"][0]["simulated"] == "deny (tokens_exhausted)"
    assert sim["groups"] == [
        {
            "rule": "tokens_exhausted",
            "agent": "agents/agent",
            "change": "allow -> deny (tokens_exhausted)",
            "count": 1,
        }
    ]

    # A looser one lets the refused call through (and says its spend is unknown).
    loose = tmp_path / "loose.yaml"
    loose.write_text(
        yaml.safe_dump(
            merge(
                base_policy(upstreams),
                {"spec": {"budgets": {"tokens": {"limit": 100000}, "calls": {"limit": 50}}}},
            )
        )
    )
    sim = orjson.loads(
        cli(
            "policy",
            "simulate",
            str(loose),
            "--spool",
            str(audit),
            "--policy",
            str(policy),
            "--json",
        ).stdout
    )
    assert [(c["decision_id"], c["simulated"]) for c in sim["changes"]] == [
        (ids["too-big"], "allow")
    ]

    # Tool rules read the request, which the record does not keep: undecidable, per call.
    tools = tmp_path / "tools.yaml"
    doc = merge(base_policy(upstreams), POLICY_EXTRA)
    doc["spec"]["tools"]["rules"][1]["mcpTools"].append("delete_file")
    tools.write_text(yaml.safe_dump(doc))
    done = cli(
        "policy", "simulate", str(tools), "--spool", str(audit), "--policy", str(policy), "--json"
    )
    assert done.returncode == 1
    sim = orjson.loads(done.stdout)
    assert sim["changed"] == 0 and sim["undecidable"] == 6
    assert all("spec.tools" in u["reason"] for u in sim["undecidable_decisions"])

    # Another policy file (another digest) cannot stand in for the one that decided.
    other = tmp_path / "other.yaml"
    other.write_text(policy.read_text() + "\n# edited\n")
    done = cli("audit", "explain", ids["small"], "--spool", str(audit), "--policy", str(other))
    assert done.returncode == 2 and "policy_not_found" in done.stderr
    done = cli("audit", "replay", run_id, "--spool", str(audit), "--policy", str(other))
    assert done.returncode == 2 and "policy_not_found" in done.stderr

    # A tampered (and re-hashed) copy: replay names the first edited decision, exit 1.
    forged = tmp_path / "forged"
    shutil.copytree(audit, forged)
    tamper(forged, ids["too-big"])
    done = cli("audit", "replay", run_id, "--spool", str(forged), "--policy", str(policy), "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    first = orjson.loads(done.stdout)["first_mismatch"]
    assert first["decision_id"] == ids["too-big"]
    assert any("budget.decision.allowed" in m for m in first["mismatches"])
    done = cli(
        "audit",
        "explain",
        ids["too-big"],
        "--spool",
        str(forged),
        "--policy",
        str(policy),
        "--json",
    )
    assert done.returncode == 1 and orjson.loads(done.stdout)["match"] is False

    # PostgreSQL: ship, then the same answers from the database, and from the API.
    shipped = cli("audit", "ship", "--spool", str(audit), "--dsn", audit_db.writer, "--once")
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    done = cli("audit", "replay", run_id, "--dsn", audit_db.reader, "--policy", str(policy))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all match" in done.stdout
    done = cli(
        "audit",
        "explain",
        ids["too-big"],
        "--dsn",
        audit_db.reader,
        "--policy",
        str(policy),
        "--json",
    )
    assert done.returncode == 0 and orjson.loads(done.stdout)["decided_by"] == "budget"
    done = cli(
        "policy",
        "simulate",
        str(strict),
        "--dsn",
        audit_db.reader,
        "--policy",
        str(policy),
        "--json",
    )
    assert done.returncode == 1
    assert [c["decision_id"] for c in orjson.loads(done.stdout)["changes"]] == [ids["after"]]

    app = create_app(audit_db.reader, TOKEN, policies=PolicyStore.from_files([policy]))
    async with TestClient(TestServer(app)) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = await client.get(f"/v1/decisions/{ids['too-big']}/explain", headers=auth)
        assert r.status == 200
        body = await r.json()
        assert body["match"] is True and body["replayed"]["decision"]["allowed"] is False
        r = await client.get("/v1/decisions/nope/explain", headers=auth)
        assert r.status == 404
        assert (await r.json())["error"]["code"] == "decision_not_found"
        spec = await (await client.get("/openapi.json")).json()
        assert "/v1/decisions/{decision_id}/explain" in spec["paths"]
