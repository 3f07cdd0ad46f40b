"""The e2e sample agent: LLM and MCP tool calls in a loop until haltgate halts it.

Standard library only (it runs in any Python image). It talks to its upstreams directly;
in the pod, haltgate's iptables rules route every connection through the sidecar. Prints
one line per call and ``HALTED <type> <code>`` when refused with a halt, then idles so
its logs stay readable (``kubectl logs deploy/researcher -c agent``).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request

LLM_URL = os.environ.get("LLM_URL", "http://127.0.0.1:8080")
MCP_URL = os.environ.get("MCP_URL", "http://127.0.0.1:8081/mcp")
MAX_STEPS = int(os.environ.get("AGENT_MAX_STEPS", "30"))
IDLE = os.environ.get("AGENT_IDLE", "1") == "1"


def post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def llm(prompt: str) -> tuple[int, dict]:
    return post(LLM_URL + "/v1/chat/completions", {
        "model": "gpt-4o-mini", "max_tokens": 16,
        "messages": [{"role": "user", "content": prompt}]})


def tool(step: int, name: str, arguments: dict) -> tuple[int, dict]:
    return post(MCP_URL, {"jsonrpc": "2.0", "id": step, "method": "tools/call",
                          "params": {"name": name, "arguments": arguments}})


def refusal(status: int, body: dict) -> dict | None:
    """haltgate's refusal data (HTTP error for LLM calls, JSON-RPC error for MCP)."""
    if "error" not in body:
        return None
    error = body["error"]
    return error.get("data", error) if isinstance(error, dict) else {"code": str(error)}


def main() -> int:
    script = [("tool", "delete_file", {"path": "/data/notes.md"}),
              ("llm", "use key AKIA2E3MBFQXKZ7VJ4NA to deploy", None)]
    for step in range(1, MAX_STEPS + 1):
        if step <= len(script):
            kind, what, args = script[step - 1]
        elif step % 2:
            kind, what, args = "tool", "search", {"query": f"agent governance {step}"}
        else:
            kind, what, args = "llm", f"refine the answer, iteration {step}", None
        status, body = tool(step, what, args) if kind == "tool" else llm(what)
        refused = refusal(status, body)
        if refused is None:
            print(f"step {step}: {kind} {what}: allowed", flush=True)
            continue
        print(f"step {step}: {kind} {what}: refused {refused.get('type')} "
              f"{refused.get('code')}", flush=True)
        if refused.get("type") in ("EXHAUSTION", "EXTERNAL", "STAGNATION", "OVERRISK"):
            print(f"HALTED {refused.get('type')} {refused.get('code')}", flush=True)
            break
    else:
        print("NOT HALTED", flush=True)
        return 1
    while IDLE:
        time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
