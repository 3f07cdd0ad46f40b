"""The ``haltgate sidecar`` command as the pod runs it: real process, real audit spool."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import yaml

from haltgate.governance.audit.spool import iter_frames, list_segments, segment_path
from tests.sidecar.conftest import Standins, base_policy

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def haltgate(*args: str) -> list[str]:
    return [sys.executable, "-c", "from haltgate.cli.main import main; main()", *args]


async def wait_ready(url: str, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            assert proc.returncode is None, "sidecar exited"
            try:
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=0.5)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("sidecar not ready in 20 s")


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
    ports = {name: free_port() for name in ("explicit", "admin", "metrics")}
    env = {
        **os.environ,
        "HALTGATE_POD_NAME": "agent-7d4b9c6f5-x2kqp",
        "HALTGATE_POD_NAMESPACE": "agents",
    }
    proc = await asyncio.create_subprocess_exec(
        *haltgate(
            "sidecar",
            "--policy",
            str(policy),
            "--state-dir",
            str(state),
            "--mode",
            "explicit",
            "--listen",
            f"127.0.0.1:{ports['explicit']}",
            "--admin-listen",
            f"127.0.0.1:{ports['admin']}",
            "--metrics-listen",
            f"127.0.0.1:{ports['metrics']}",
            "--log-level",
            "error",
        ),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
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
