"""The ``haltgate sidecar`` command as the pod runs it: real process, real audit spool."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import aiohttp
import orjson
import yaml

from haltgate.governance.audit.spool import iter_frames, list_segments, segment_path
from tests.sidecar.cli_process import (
    haltgate,
    spawn_pod_sidecar,
    wait_ready,
)
from tests.sidecar.conftest import Standins, base_policy


def test_invalid_policy_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: haltgate.dev/v1alpha1\nkind: GovernancePolicy\n"
        "metadata: {name: x}\nspec: {budgets: {calls: {limit: -1}}}\n"
    )
    proc = subprocess.run(
        haltgate("sidecar", "--policy", str(bad), "--mode", "explicit"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "spec.budgets.calls.limit" in proc.stderr


async def test_process_with_spool(standins: Standins, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(base_policy(standins)))
    state = tmp_path / "state"
    proc, ports = await spawn_pod_sidecar(policy, state)
    try:
        await wait_ready(f"http://127.0.0.1:{ports['admin']}/readyz", proc)
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                f"http://127.0.0.1:{ports['explicit']}/llm/v1/chat/completions",
                json={"model": "m", "max_tokens": 2, "messages": []},
            ) as r,
        ):
            assert r.status == 200
            decision_id = r.headers["x-haltgate-decision-id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
    audit = state / "audit"
    records = []
    for number in list_segments(audit):
        frames, _, problem = iter_frames(segment_path(audit, number).read_bytes(), number)
        assert problem is None
        records += [orjson.loads(f.data) for f in frames]
    # Segments open with a checkpoint frame (chain heads); the rest are records.
    mine = [rec for rec in records if rec.get("decision_id") == decision_id]
    assert [rec["phase"] for rec in mine] == ["intent", "outcome"]
    assert mine[1]["usage"]["output_tokens"] == 2
    assert mine[0]["namespace"] == "agents" and mine[0]["workload"] == "agent"
    assert list(state.glob("budget-state.json*"))  # the Governor persisted its state
