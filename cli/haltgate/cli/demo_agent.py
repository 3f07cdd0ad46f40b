"""The demo's agent: a scripted loop of LLM and MCP tool calls until the sidecar halts it,
run on the host or as its own process in the pod's network namespace."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import click

from haltgate.cli import demo_dashboard
from haltgate.cli.demo_setting import AGENT_UID, AWS_KEY_PROMPT, MAX_AGENT_STEPS, POD_IP
from haltgate.cli.demo_shell import Console, DemoError, clean_env, http_call
from haltgate.cli.demo_state import Demo


def agent(d: Demo) -> None:
    d.console.step("The agent: a loop of LLM and MCP tool calls through the sidecar")
    if d.mode == "netns":
        # The agent runs in the pod namespace as UID 1000 and calls the upstreams by
        # address; the iptables rules send its connections to the sidecar.
        d.console.info(
            f"agent: UID {AGENT_UID} in netns {d.topo.pod.name}, calls "
            f"{d.urls['llm']} and {d.urls['mcp']}/mcp directly"
        )
        argv = d.topo.pod.exec_argv(
            [
                "setpriv",
                f"--reuid={AGENT_UID}",
                f"--regid={AGENT_UID}",
                "--clear-groups",
                sys.executable,
                "-c",
                "import sys; from haltgate.cli.demo_agent import agent_main; "
                "sys.exit(agent_main(*sys.argv[1:]))",
                d.urls["llm"],
                d.urls["mcp"] + "/mcp",
                str(pace(d)),
            ]
        )
        res = subprocess.run(argv, timeout=120, check=False, env=clean_env(), cwd=d.workdir)
        if res.returncode != 0:
            raise DemoError(f"the agent failed (exit {res.returncode})")
        metrics = d.topo.upstream.run(
            [
                sys.executable,
                "-c",
                "import sys, urllib.request; "
                "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())",
                f"http://{POD_IP}:{d.ports['metrics']}/metrics",
            ],
            check=False,
        )
        d.metrics_text = metrics.stdout
    else:
        base = f"http://127.0.0.1:{d.ports['explicit']}"
        run_agent(d.console, base + "/llm", base + "/tools", pace(d))
        _, _, text = http_call("GET", f"http://127.0.0.1:{d.ports['metrics']}/metrics")
        d.metrics_text = text if isinstance(text, str) else ""


def pace(d: Demo) -> float:
    """Seconds between the agent's calls: spread over a few scrapes when there is a
    dashboard picture to draw, else none."""

    return demo_dashboard.AGENT_PACE_SECONDS if d.drawing is not None else 0.0


SCRIPT: list[tuple[str, str, Any]] = [
    ("llm", "plan: research the latest on agent governance", None),
    ("tool", "search", {"query": "agent governance kubernetes"}),
    ("llm", "summarise the search results", None),
    ("tool", "delete_file", {"path": "/data/notes.md"}),
    ("llm", AWS_KEY_PROMPT, None),
    ("llm-big", "think harder about it", None),
]
"""The agent's first steps (then it alternates LLM and search calls until halted)."""


def run_agent(console: Console, llm_base: str, mcp_url: str, pace: float = 0.0) -> None:
    """The sample agent: scripted calls, then a loop, until the sidecar halts it.

    ``llm_base`` is the OpenAI-compatible base URL (``.../v1/chat/completions`` is appended)
    and ``mcp_url`` the MCP endpoint: the upstreams themselves (transparent mode) or the
    sidecar's aliases (explicit mode). ``pace``: seconds between calls (so that Prometheus,
    scraping every second, sees the run unfold). Raises DemoError if the halt never comes."""
    seen: dict[str, int] = {}
    halted = False
    for step in range(MAX_AGENT_STEPS):
        if step and pace:
            time.sleep(pace)
        if step < len(SCRIPT):
            kind, what, args = SCRIPT[step]
        elif step % 2:
            kind, what, args = "tool", "search", {"query": f"follow-up {step}"}
        else:
            kind, what, args = "llm", f"refine the answer, iteration {step}", None
        outcome, detail, failure = _agent_call(llm_base, mcp_url, kind, what, args, step)
        seen[outcome] = seen.get(outcome, 0) + 1
        label = f"{kind:<8}{what[:44]:<46}"
        if outcome == "allowed":
            console.ok(f"{label} allowed   {detail}")
        else:
            console.refused(f"{label} {failure:<10} {detail}")
        if failure == "EXHAUSTION":
            halted = True
            break
    if not halted:
        raise DemoError(f"the agent was never halted in {MAX_AGENT_STEPS} steps")
    if not seen.get("allowed") or "refused" not in seen:
        raise DemoError(f"expected allowed and refused calls, got {seen}")
    # The halt is sticky: the next call is refused too, with no upstream call.
    outcome, detail, failure = _agent_call(llm_base, mcp_url, "llm", "one more try", None, 99)
    if failure != "EXHAUSTION":
        raise DemoError(f"after the halt a call was {outcome} ({failure})")
    console.ok(f"halted for good: the next call is refused too ({failure})")


def agent_main(llm_base: str, mcp_url: str, pace: str = "0") -> int:
    """Entry point of the agent process in network-namespace mode (exit 0: halted)."""
    try:
        run_agent(Console(total=0), llm_base, mcp_url, float(pace))
    except DemoError as e:
        click.secho(f"    agent: {e}", fg="red", err=True)
        return 1
    return 0


def _agent_call(
    llm_base: str, mcp_url: str, kind: str, what: str, args: Any, step: int
) -> tuple[str, str, str]:
    """One call; returns (allowed|refused, detail, failure type)."""
    if kind == "tool":
        status, _, body = http_call(
            "POST",
            mcp_url,
            {
                "jsonrpc": "2.0",
                "id": step + 1,
                "method": "tools/call",
                "params": {"name": what, "arguments": args},
            },
        )
        if isinstance(body, dict) and "error" in body:
            data = body["error"].get("data") or {}
            return (
                "refused",
                f"{data.get('code')}: {data.get('message', '')[:60]}",
                str(data.get("type")),
            )
        return "allowed", f"HTTP {status}", ""
    model = "gpt-5" if kind == "llm-big" else "gpt-4o-mini"
    status, headers, body = http_call(
        "POST",
        llm_base + "/v1/chat/completions",
        {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": what}]},
    )
    if status == 200:
        usage = body.get("usage", {}) if isinstance(body, dict) else {}
        warn = headers.get("x-haltgate-budget-warning")
        extra = f", budget warning: {warn}" if warn else ""
        return (
            "allowed",
            (
                f"HTTP 200, {usage.get('prompt_tokens')}+"
                f"{usage.get('completion_tokens')} tokens{extra}"
            ),
            "",
        )
    error = body.get("error", {}) if isinstance(body, dict) else {}
    return (
        "refused",
        f"HTTP {status} {error.get('code')}: {error.get('message', '')[:60]}",
        (str(error.get("type"))),
    )
