"""Several real ``haltgate sidecar`` processes sharing one pool in a real PostgreSQL.

Each sidecar runs in explicit mode in front of the stand-in HTTP API. The tests drive them
as the agents would, over HTTP, and read the pool's truth from the database.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from haltgate.testbed.cli_processes import HALTGATE, standin_process
from haltgate.testbed.process import ManagedProcess, free_port, port_open, wait_until
from tests.pool.helpers import REPO, start_member_sidecar

pytestmark = pytest.mark.postgres

NS = "team"


@dataclass
class Sidecar:
    proc: ManagedProcess
    port: int
    log: Path

    def url(self, alias: str, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{alias}{path}"


def call(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def connect_status(s: Sidecar, target: str) -> int:
    """Status of a CONNECT through the sidecar's explicit port (tunnels are not calls)."""
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as conn:
        conn.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        return int(conn.recv(4096).split(b" ", 2)[1])


def code_of(body: dict[str, Any]) -> str | None:
    err = body.get("error")
    return err.get("code") if isinstance(err, dict) else None


@pytest.fixture(scope="module")
def http_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("standin") / "http.log"
    with standin_process("http_api", log, cwd=REPO) as url:
        yield url


def apply_pool(dsn: str, tmp: Path, name: str, spec: dict[str, Any]) -> None:
    doc = {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "BudgetPool",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }
    path = tmp / f"pool-{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    done = subprocess.run(
        [HALTGATE, "pool", "apply", "--dsn", dsn, "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def sidecars(pool_dsn: str, http_standin: str, tmp_path: Path) -> Iterator[Callable[..., Sidecar]]:
    started: list[Sidecar] = []

    def start(
        workload: str,
        pool: str,
        budgets: dict[str, Any] | None = None,
        *,
        dsn: str | None = pool_dsn,
        metrics_port: int | None = None,
        enforcement: str = "enforce",
    ) -> Sidecar:
        policy = {
            "apiVersion": "haltgate.dev/v1alpha1",
            "kind": "GovernancePolicy",
            "metadata": {"name": workload, "namespace": NS},
            "spec": {
                "pool": pool,
                "enforcement": enforcement,
                "budgets": budgets or {},
                "upstreams": [
                    {"name": "tool", "url": http_standin, "kind": "http"},
                    {"name": "peer", "url": http_standin, "kind": "http", "agent": True},
                    {
                        "name": "tunnel",
                        "kind": "http",
                        "tls": "passthrough",
                        "url": http_standin.replace("http://127.0.0.1", "https://localhost"),
                    },
                ],
                "tools": {"default": "allow"},
            },
        }
        proc, port, log = start_member_sidecar(
            tmp_path, policy, pool_dsn=dsn, metrics_port=metrics_port
        )
        sidecar = Sidecar(proc, port, log)
        started.append(sidecar)
        return sidecar

    def ready(*which: Sidecar) -> None:
        for s in which:
            port = s.port
            wait_until(
                lambda: port_open("127.0.0.1", port),  # noqa: B023
                timeout=30,
                what=s.proc.name,
                log=s.log,
                alive=s.proc.alive,
            )
            assert s.proc.popen is not None
            maps = Path(f"/proc/{s.proc.popen.pid}/maps")
            if maps.exists():  # Linux: the sidecar really runs on uvloop, not the fallback
                assert "uvloop" in maps.read_text(), f"{s.proc.name} is not on uvloop"

    start.ready = ready  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for s in started:
            s.proc.stop()


def pool_row(dsn: str, name: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT * FROM haltgate.pools WHERE pool = %s", (f"{NS}/{name}",))
        row = cur.fetchone()
        assert row is not None
        cur.execute("SELECT holder FROM haltgate.pool_leases WHERE pool = %s", (f"{NS}/{name}",))
        row["holders"] = sorted(r["holder"] for r in cur.fetchall())
        return row


def eventually(check: Callable[[], Any], *, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.05) + 1):  # bounded
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {seconds} s")


# ---------------------------------------------------------------------------- tests


def test_concurrent_spend_from_three_sidecars_never_overshoots(
    pool_dsn: str, sidecars: Any, tmp_path: Path
) -> None:
    limit = 60
    apply_pool(pool_dsn, tmp_path, "shared", {"calls": {"limit": limit}, "leaseFraction": 0.2})
    members = [sidecars(f"agent-{i}", "shared") for i in range(3)]
    sidecars.ready(*members)

    def hammer(s: Sidecar) -> tuple[int, set[str | None]]:
        ok, refusals = 0, set()
        for _ in range(40):  # bounded; 3 members x 2 threads x 40 > limit
            status, body = call(s.url("tool", "/items"))
            if status == 200:
                ok += 1
            else:
                refusals.add(code_of(body))
        return ok, refusals

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(hammer, members * 2))
    granted = sum(r[0] for r in results)
    # The documented bound: no lease expired here, so the over-spend bound is 0.
    assert granted == limit
    assert set().union(*(r[1] for r in results)) == {"pool_calls_exhausted"}
    for s in members:
        s.proc.stop()  # SIGTERM: each returns its lease
    row = pool_row(pool_dsn, "shared")
    assert row["calls_used"] == limit and row["calls_leased"] == 0 and row["holders"] == []


def test_a_killed_sidecars_lease_comes_back_after_expiry(
    pool_dsn: str, sidecars: Any, tmp_path: Path
) -> None:
    apply_pool(
        pool_dsn,
        tmp_path,
        "expiry",
        {"calls": {"limit": 40}, "leaseFraction": 0.5, "leaseSeconds": 2},
    )
    doomed = sidecars("doomed", "expiry")
    sidecars.ready(doomed)
    assert call(doomed.url("tool", "/items"))[0] == 200
    assert pool_row(pool_dsn, "expiry")["calls_leased"] == 20
    doomed.proc.popen.kill()  # kill -9 mid-lease: nothing is returned
    doomed.proc.popen.wait(10)
    survivor = sidecars("survivor", "expiry")
    sidecars.ready(survivor)
    # The survivor's maintenance sweeps the expired lease back into the pool.
    eventually(
        lambda: "team/doomed/doomed-0" not in pool_row(pool_dsn, "expiry")["holders"],
        seconds=8,
        what="expired lease returned",
    )
    granted = sum(call(survivor.url("tool", "/items"))[0] == 200 for _ in range(45))
    # 40 in the pool, 1 spent by the killed member and never reported: the survivor gets
    # all 40 (over-spend of 1 <= the killed lease of 20: the documented bound).
    assert granted == 40
    with psycopg.connect(pool_dsn) as conn:
        kinds = conn.execute(
            "SELECT kind, actor FROM haltgate.pool_events WHERE pool = %s", (f"{NS}/expiry",)
        ).fetchall()
    assert ("lease_expired", "team/doomed/doomed-0") in kinds


def test_a_loop_between_two_agents_halts_the_pool_and_a_lift_resumes(
    pool_dsn: str, sidecars: Any, http_standin: str, tmp_path: Path
) -> None:
    apply_pool(
        pool_dsn, tmp_path, "loop", {"calls": {"limit": 1000}, "cascade": {"detectLoops": True}}
    )
    a, b, c = sidecars("agent-a", "loop"), sidecars("agent-b", "loop"), sidecars("agent-c", "loop")
    sidecars.ready(a, b, c)
    urllib.request.urlopen(
        urllib.request.Request(f"{http_standin}/_standin/requests", method="DELETE"), timeout=5
    )

    def last_chain() -> str:
        with urllib.request.urlopen(f"{http_standin}/_standin/requests", timeout=5) as r:
            seen = json.loads(r.read())
        return {k.lower(): v for k, v in seen[-1]["headers"].items()}["x-haltgate-chain"]

    tunnel = http_standin.replace("http://127.0.0.1", "localhost")
    assert connect_status(c, tunnel) == 200
    # A calls B: A's sidecar starts a chain.
    assert call(a.url("peer", "/echo/task"))[0] == 200
    chain = last_chain()
    assert chain.endswith("path=team/agent-a") and ";depth=1;" in chain
    # B, serving that call, calls A and passes the header on: B's sidecar appends B.
    assert call(b.url("peer", "/echo/task"), {"x-haltgate-chain": chain})[0] == 200
    chain = last_chain()
    assert chain.endswith("path=team/agent-a,team/agent-b")
    # Non-agent upstreams never see the header.
    assert call(a.url("tool", "/items"))[0] == 200
    assert "x-haltgate-chain" not in {
        k.lower()
        for k in json.loads(
            urllib.request.urlopen(f"{http_standin}/_standin/requests", timeout=5).read()
        )[-1]["headers"]
    }
    # A, serving B's call, calls B again: A -> B -> A is a loop.
    status, body = call(a.url("peer", "/echo/task"), {"x-haltgate-chain": chain})
    assert status == 423 and code_of(body) == "cascade_loop"
    assert body["error"]["type"] == "EXTERNAL"
    # Every member refuses (LISTEN/NOTIFY, or the state re-read), C too. How fast is a
    # figure of bench/pool.py; the bound here only guards against a hang.
    eventually(
        lambda: code_of(call(c.url("tool", "/items"))[1]) == "pool_halted",
        seconds=15,
        what="C refuses",
    )
    status, body = call(b.url("tool", "/items"))
    assert status == 423 and code_of(body) == "pool_halted"
    assert connect_status(c, tunnel) == 423  # no new tunnels from a halted pool either
    row = pool_row(pool_dsn, "loop")
    assert row["state"] == "Halted" and row["halt_code"] == "cascade_loop"
    assert row["halted_by"] == "team/agent-a"
    # An authenticated, audited lift resumes every member.
    done = subprocess.run(
        [
            HALTGATE,
            "pool",
            "lift",
            "--dsn",
            pool_dsn,
            "-n",
            NS,
            "loop",
            "--reason",
            "loop fixed",
            "--as",
            "alice",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    eventually(lambda: call(c.url("tool", "/items"))[0] == 200, seconds=3, what="C resumes")
    assert call(b.url("tool", "/items"))[0] == 200


def test_a_halt_storm_halts_the_pool(pool_dsn: str, sidecars: Any, tmp_path: Path) -> None:
    apply_pool(
        pool_dsn, tmp_path, "storm", {"cascade": {"haltStorm": {"halts": 2, "windowSeconds": 60}}}
    )
    one_call = {"calls": {"limit": 1}}
    a = sidecars("storm-a", "storm", one_call)
    b = sidecars("storm-b", "storm", one_call)
    c = sidecars("storm-c", "storm")
    sidecars.ready(a, b, c)
    for s in (a, b):
        assert call(s.url("tool", "/items"))[0] == 200
        status, body = call(s.url("tool", "/items"))
        assert status == 429 and code_of(body) == "calls_exhausted"  # the member's own run halts
    eventually(
        lambda: code_of(call(c.url("tool", "/items"))[1]) == "pool_halted",
        seconds=5,
        what="storm halts the pool",
    )
    row = pool_row(pool_dsn, "storm")
    assert row["state"] == "Halted" and row["halt_code"] == "halt_storm"


def test_without_the_pool_database_calls_fail_closed_and_are_counted(sidecars: Any) -> None:
    metrics = free_port()
    dead = sidecars(
        "unreachable",
        "p",
        dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
        metrics_port=metrics,
    )
    unset = sidecars("unset", "p", dsn=None)
    sidecars.ready(dead, unset)
    status, body = call(dead.url("tool", "/items"))
    assert status == 503 and code_of(body) == "pool_unreachable"
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert re.search(r'haltgate_pool_fail_total\{[^}]*mode="closed"[^}]*\} 1\.0', text)
    status, body = call(unset.url("tool", "/items"))
    assert status == 503 and code_of(body) == "pool_unconfigured"


def test_an_error_storm_halts_the_pool(pool_dsn: str, sidecars: Any, tmp_path: Path) -> None:
    apply_pool(
        pool_dsn,
        tmp_path,
        "errors",
        {"cascade": {"errorStorm": {"errors": 3, "windowSeconds": 60}}},
    )
    a, b = sidecars("flaky-a", "errors"), sidecars("flaky-b", "errors")
    sidecars.ready(a, b)
    assert call(a.url("tool", "/status/500"))[0] == 500
    assert call(b.url("tool", "/status/500"))[0] == 500
    assert call(a.url("tool", "/items"))[0] == 200  # two errors: no storm yet
    assert call(b.url("tool", "/status/503"))[0] == 503
    eventually(
        lambda: code_of(call(a.url("tool", "/items"))[1]) == "pool_halted",
        seconds=5,
        what="error storm halts the pool",
    )
    assert pool_row(pool_dsn, "errors")["halt_code"] == "error_storm"


def test_a_chain_deeper_than_the_limit_halts_the_pool(
    pool_dsn: str, sidecars: Any, tmp_path: Path
) -> None:
    apply_pool(pool_dsn, tmp_path, "deep", {"cascade": {"maxChainDepth": 3}})
    a = sidecars("deep-a", "deep")
    sidecars.ready(a)
    ok = "trace=0123456789abcdef;depth=2;path=team/x,team/y"
    assert call(a.url("peer", "/echo/t"), {"x-haltgate-chain": ok})[0] == 200  # depth 3
    deep = "trace=0123456789abcdef;depth=3;path=team/x,team/y,team/z"
    status, body = call(a.url("peer", "/echo/t"), {"x-haltgate-chain": deep})
    assert status == 423 and code_of(body) == "cascade_depth"
    assert pool_row(pool_dsn, "deep")["halt_code"] == "cascade_depth"
    # A malformed header is refused as such, not guessed at.
    status, body = call(a.url("tool", "/items"), {"x-haltgate-chain": "garbage"})
    assert status == 400 and code_of(body) == "invalid_chain_header"
