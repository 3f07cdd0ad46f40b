"""A shared pool under concurrent MCP batches from several real sidecar processes: the
pool's ``calls`` counts every message that does work upstream, so a pool limit of N means
at most N tool executions at the MCP server (issue 15)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from haltgate.testbed.cli_processes import standin_process
from haltgate.testbed.process import port_open, wait_until
from tests.pool.helpers import REPO, start_member_sidecar
from tests.pool.test_sidecars import NS, apply_pool, pool_row

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def mcp_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("standin") / "mcp.log"
    with standin_process("mcp", log, cwd=REPO) as url:
        yield url


def post(url: str, payload: Any) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return json.loads(e.read() or b"null")


def test_pool_calls_bound_tool_executions_of_concurrent_batches(
    pool_dsn: str, mcp_standin: str, tmp_path: Path
) -> None:
    limit = 20
    apply_pool(pool_dsn, tmp_path, "mcp-shared", {"calls": {"limit": limit}, "leaseFraction": 0.25})
    members = []
    try:
        for i in range(2):
            workload = f"mcp-agent-{i}"
            policy = {
                "apiVersion": "haltgate.dev/v1alpha1",
                "kind": "GovernancePolicy",
                "metadata": {"name": workload, "namespace": NS},
                "spec": {
                    "pool": "mcp-shared",
                    "upstreams": [{"name": "mcp", "url": mcp_standin + "/mcp", "kind": "mcp"}],
                    "tools": {"default": "allow"},
                },
            }
            proc, port, _log = start_member_sidecar(tmp_path, policy, pool_dsn=pool_dsn)
            members.append((proc, port))
        for proc, port in members:

            def listening(p: int = port) -> bool:
                return port_open("127.0.0.1", p)

            wait_until(listening, timeout=30, what=proc.name, log=proc.log, alive=proc.alive)
        # Session plumbing is free: it does not touch the pool.
        for _, port in members:
            answer = post(
                f"http://127.0.0.1:{port}/mcp", {"jsonrpc": "2.0", "id": 0, "method": "ping"}
            )
            assert "result" in answer

        def hammer(port: int) -> list[bool]:
            outcomes = []
            for n in range(10):  # bounded: 2 members x 2 threads x 10 batches x 3 > limit
                batch = [
                    {
                        "jsonrpc": "2.0",
                        "id": i,
                        "method": "tools/call",
                        "params": {"name": "echo", "arguments": {"text": f"{n}.{i}"}},
                    }
                    for i in range(3)
                ]
                answer = post(f"http://127.0.0.1:{port}/mcp", batch)
                results = ["result" in m for m in answer]
                assert len(set(results)) == 1, answer  # whole or not at all
                outcomes.append(results[0])
            return outcomes

        with ThreadPoolExecutor(4) as executor:
            runs = list(executor.map(hammer, [p for _, p in members] * 2))
        whole = sum(sum(r) for r in runs)
        with urllib.request.urlopen(mcp_standin + "/_standin/executions", timeout=10) as r:
            executed = json.loads(r.read()).get("tool", 0)
        assert 0 < executed <= limit
        assert executed == 3 * whole
    finally:
        for proc, _ in members:
            proc.stop()
    row = pool_row(pool_dsn, "mcp-shared")
    assert row["calls_used"] <= limit and row["calls_leased"] == 0
