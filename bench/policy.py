"""Benchmark of policy decisions: tool rules alone, and OPA decisions over loopback.

    .venv/bin/python bench/policy.py [--n 3000] [--opa PATH]

Prints, measured in the same run:
- ToolAuthorizer checks per second for typical calls, vs. a baseline of calling a no-op
  function with the same call object (the cost floor of any Python check). Target: at least
  500,000 checks/s.
- OPA decision latency p50/p99 through OPAEvaluator (no cache, and cache hits), vs. the
  baseline of an HTTP GET of OPA's /health on the same connection pool, plus a raw aiohttp
  POST of the same decision and opa-python-client's ``query_rule`` (why the evaluator talks
  aiohttp itself). Target: p50 <= 0.5 ms per OPA decision on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from haltgate.governance.opa import OPAEvaluator
from haltgate.governance.opa_input import build_input
from haltgate.governance.policy_checks import OPA
from haltgate.governance.policy_rules import Tools
from haltgate.governance.rego import find_opa_binary
from haltgate.governance.request import AgentIdentity, CallView, RequestKind, ToolCall
from haltgate.governance.tools import ToolAuthorizer

TOOLS = Tools.model_validate(
    {
        "default": "deny",
        "rules": [
            {
                "name": "llm-openai",
                "action": "allow",
                "kind": "llm",
                "hosts": ["api.openai.com"],
                "models": ["gpt-4o*", "gpt-4.1*"],
                "risk": 0.1,
            },
            {
                "name": "llm-anthropic",
                "action": "allow",
                "kind": "llm",
                "hosts": ["api.anthropic.com"],
                "models": ["claude-*"],
            },
            {"name": "no-reasoning", "action": "deny", "kind": "llm", "models": ["o1*", "o3*"]},
            {
                "name": "gh-read",
                "action": "allow",
                "kind": "mcp",
                "mcpServers": ["github"],
                "mcpTools": ["get_*", "list_*", "search_*"],
                "risk": 0.2,
            },
            {
                "name": "gh-issue",
                "action": "allow",
                "kind": "mcp",
                "mcpServers": ["github"],
                "mcpTools": ["create_issue"],
                "risk": 1,
                "arguments": [
                    {"path": "$.repo", "in": ["acme/app", "acme/web"]},
                    {"path": "$.title", "maxLength": 200},
                ],
            },
            {"name": "no-deletes", "action": "deny", "mcpTools": ["delete_*"], "risk": 5},
            {
                "name": "sql-read",
                "action": "allow",
                "kind": "mcp",
                "mcpServers": ["db"],
                "mcpTools": ["query"],
            },
            {
                "name": "sql-no-ddl",
                "action": "deny",
                "mcpTools": ["query"],
                "arguments": [{"path": "$.sql", "regex": "(?i)\\b(drop|truncate|alter)\\b"}],
            },
            {
                "name": "http-read",
                "action": "allow",
                "kind": "http",
                "methods": ["GET"],
                "hosts": ["*.svc.cluster.local"],
                "paths": ["/api/**"],
            },
            {"name": "http-no-admin", "action": "deny", "kind": "http", "paths": ["/admin/**"]},
        ],
    }
)

AGENT = AgentIdentity("agents", "research", "research-0", "run-1")
CALLS = {
    "llm allow": CallView(
        kind=RequestKind.LLM,
        method="POST",
        scheme="https",
        host="api.openai.com",
        port=443,
        path="/v1/chat/completions",
        model="gpt-4o-mini",
        agent=AGENT,
    ),
    "mcp tool + 2 arg constraints": CallView(
        kind=RequestKind.MCP,
        method="POST",
        scheme="https",
        host="mcp.github.com",
        port=443,
        path="/mcp",
        upstream="github",
        mcp_method="tools/call",
        agent=AGENT,
        tool_calls=(ToolCall("create_issue", {"repo": "acme/app", "title": "bug"}, "github"),),
    ),
    "mcp sql deny regex": CallView(
        kind=RequestKind.MCP,
        method="POST",
        scheme="http",
        host="db-mcp",
        port=80,
        path="/mcp",
        upstream="db",
        mcp_method="tools/call",
        agent=AGENT,
        tool_calls=(ToolCall("query", {"sql": "select * from t"}, "db"),),
    ),
    "http GET": CallView(
        kind=RequestKind.HTTP,
        method="GET",
        scheme="http",
        host="ledger.finance.svc.cluster.local",
        port=80,
        path="/api/v1/accounts",
        agent=AGENT,
    ),
    "batch of 3 tools": CallView(
        kind=RequestKind.MCP,
        method="POST",
        scheme="https",
        host="mcp.github.com",
        port=443,
        path="/mcp",
        upstream="github",
        mcp_method="tools/call",
        agent=AGENT,
        tool_calls=(
            ToolCall("get_file", {"path": "a"}, "github"),
            ToolCall("list_issues", {}, "github"),
            ToolCall("create_issue", {"repo": "acme/web", "title": "x"}, "github"),
        ),
    ),
}

REGO = """\
package haltgate

default decision := {"allow": false, "reason": "no rule allows this call"}

decision := {"allow": false, "reason": "personal data to an external host"} if {
    some f in input.findings
    f.detector == "pii"
    not endswith(input.request.host, ".svc.cluster.local")
} else := {"allow": true, "risk": 0.1} if {
    input.authz.allowed
    input.usage.cost_usd < 10
}
"""


def rate(fn: Callable[[CallView], Any], call: CallView, seconds: float) -> float:
    """Calls of fn(call) per second, best of 3 rounds of about `seconds` / 3 each."""
    best = 0.0
    batch = 10_000
    for _ in range(3):
        n, start = 0, time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(batch):
                fn(call)
            n += batch
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


def bench_authorizer(seconds: float) -> bool:
    authorizer = ToolAuthorizer(TOOLS)

    def noop(call: CallView) -> None:
        return None

    print(
        f"ToolAuthorizer ({len(TOOLS.rules)} rules), best of 3 rounds; a check is one "
        "call, or one tool call of a batch:"
    )
    print(
        f"  {'case':30} {'authorize()/s':>14} {'checks/s':>12} {'no-op calls/s':>14} "
        f"{'cost vs no-op':>14}"
    )
    ok = True
    for name, call in CALLS.items():
        result = authorizer.authorize(call)
        r = rate(authorizer.authorize, call, seconds)
        checks = r * max(1, len(call.tool_calls))
        base = rate(noop, call, seconds / 2)
        ok &= checks >= 500_000
        print(
            f"  {name:30} {r:14,.0f} {checks:12,.0f} {base:14,.0f} {base / r:13.1f}x  "
            f"({'allow' if result.allowed else 'deny'}"
            f"{' ' + result.code if result.code else ''})"
        )
    print(f"  target >= 500,000 checks/s in every case: {'met' if ok else 'NOT met'}")
    return ok


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(n: int, fn: Callable[[], Awaitable[Any]]) -> list[float]:
    for _ in range(min(200, n)):  # warm-up: connections, OPA's compiled query cache
        await fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def start_opa(binary: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start `opa run --server` on a free loopback port; wait until it listens (<= 10 s)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    proc = subprocess.Popen(
        [binary, "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(500):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    raise SystemExit(f"opa did not start (exit code {proc.poll()})")


async def bench_opa(url: str, port: int, n: int) -> bool:
    from opa_client import AsyncOpaClient

    call = CALLS["mcp tool + 2 arg constraints"]
    authz = ToolAuthorizer(TOOLS).authorize(call)
    doc = dict(
        build_input(
            call,
            authz=authz,
            usage={"calls": 12, "cost_usd": 0.42},
            budget={"calls": {"used": 12, "reserved": 1, "limit": 500}},
        )
    )
    ev = OPAEvaluator(OPA(rego=REGO, timeout_ms=1000), REGO, url=url)
    cached = OPAEvaluator(OPA(rego=REGO, timeout_ms=1000, cache_ttl_seconds=3600), REGO, url=url)
    await ev.start()
    await cached.start()
    assert (await ev.decide(doc)).allow, await ev.decide(doc)
    body = orjson.dumps({"input": doc})
    client = AsyncOpaClient(host="127.0.0.1", port=port, retries=0)
    await client.__aenter__()
    results: dict[str, list[float]] = {}
    async with aiohttp.ClientSession() as s:

        async def health() -> None:
            async with s.get(f"{url}/health") as r:
                await r.read()

        async def raw() -> None:
            async with s.post(f"{url}/v1/data/haltgate/decision", data=body) as r:
                await r.read()

        async def library() -> None:
            await client.query_rule(doc, "haltgate", "decision")

        results["baseline: GET /health"] = await timed(n, health)
        results["raw aiohttp POST decision"] = await timed(n, raw)
        results["OPAEvaluator.decide"] = await timed(n, lambda: ev.decide(doc))
        results["opa-python-client query_rule"] = await timed(n, library)
        results["OPAEvaluator.decide, cache hit"] = await timed(n, lambda: cached.decide(doc))
    await client.close_connection()
    await ev.close()
    await cached.close()

    base = statistics.median(results["baseline: GET /health"])
    print(f"\nOPA decision latency over loopback, {n} sequential requests each (ms):")
    print(f"  {'path':34} {'p50':>8} {'p99':>8} {'p50 vs /health':>15}")
    for name, values in results.items():
        p50 = statistics.median(values)
        print(f"  {name:34} {p50:8.3f} {pct(values, 0.99):8.3f} {p50 / base:14.2f}x")
    p50 = statistics.median(results["OPAEvaluator.decide"])
    ok = p50 <= 0.5
    print(f"  target OPAEvaluator p50 <= 0.5 ms: {'met' if ok else 'NOT met'} ({p50:.3f} ms)")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="OPA requests per path")
    parser.add_argument("--seconds", type=float, default=1.5, help="time per authorizer case")
    parser.add_argument("--opa", help="opa binary (default: PATH, then the binary cache)")
    args = parser.parse_args()
    try:
        import uvloop

        loop_name = "uvloop"
        runner: Callable[[Awaitable[bool]], bool] = uvloop.run  # type: ignore[assignment]
    except ImportError:
        loop_name, runner = "asyncio", asyncio.run  # type: ignore[assignment]
    print(f"python {sys.version.split()[0]}, event loop {loop_name}")
    ok = bench_authorizer(args.seconds)
    binary = args.opa or find_opa_binary()
    if binary is None:
        print("no opa binary: skipping the OPA part (run `make binaries`)")
        return 0 if ok else 1
    version = subprocess.run([binary, "version"], capture_output=True, text=True, check=False)
    print(f"\n{version.stdout.splitlines()[0] if version.stdout else binary}")
    proc, port = start_opa(binary)
    try:
        ok = runner(bench_opa(f"http://127.0.0.1:{port}", port, args.n)) and ok
    finally:
        proc.terminate()
        proc.wait(10)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
