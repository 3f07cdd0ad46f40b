"""A small fleet under load, scraped by a real Prometheus (tests and hack/render_dashboard.py).

What starts (all real processes, each with a log in ``workdir``):
- the stand-in LLM (``python -m haltgate.testbed.standins.llm``);
- three sidecars (``haltgate sidecar``, explicit mode, durable audit spool) for the agents
  ``team-a/research``, ``team-a/support`` and ``team-b/batch`` — ``batch`` has a calls budget
  of :data:`CAPPED_CALLS` so it halts, and is reset over the admin API to halt again;
- optionally one audit shipper per sidecar (``haltgate audit ship``) into PostgreSQL;
- Prometheus (Debian's package) scraping all of them every second, with the chart's alert
  rules loaded.

:func:`drive` sends the load: chat completions with two models, some slow, some with an
e-mail address in the prompt (PII finding, redacted), some with a model the policy does not
allow (refused), and halt/reset cycles of the capped agent.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from haltgate.testbed.process import ManagedProcess, free_port, port_open, wait_until
from haltgate.testbed.prometheus import substitute as substitute  # the dashboards' queries

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts" / "haltgate" / "rules" / "haltgate-alerts.yaml"
DASHBOARDS = REPO / "charts" / "haltgate" / "dashboards"
ADMIN_TOKEN = "observability-test-admin-token"
CAPPED_CALLS = 4
SCRAPE_INTERVAL = "1s"


@dataclass(frozen=True)
class Agent:
    namespace: str
    workload: str
    policy: str
    capped: bool = False


AGENTS = (
    Agent("team-a", "research", "research-policy"),
    Agent("team-a", "support", "support-policy"),
    Agent("team-b", "batch", "batch-policy", capped=True),
)


@dataclass
class RunningAgent:
    agent: Agent
    proxy: str
    admin: str
    metrics: str
    state_dir: Path
    shipper_metrics: str | None = None


@dataclass
class Fleet:
    workdir: Path
    llm: str
    prometheus: str
    agents: list[RunningAgent]
    dsn: str | None
    processes: list[ManagedProcess] = field(default_factory=list)

    def agent(self, workload: str) -> RunningAgent:
        return next(a for a in self.agents if a.agent.workload == workload)


def prometheus_binary() -> str | None:
    """Debian's ``prometheus`` (apt-get install prometheus), if installed."""
    return shutil.which("prometheus")


def _policy(agent: Agent, llm: str) -> dict[str, Any]:
    budgets: dict[str, Any] = (
        {"calls": {"limit": CAPPED_CALLS}}
        if agent.capped
        else {"costUSD": {"limit": 1.0}, "tokens": {"limit": 2_000_000}}
    )
    doc: dict[str, Any] = {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": agent.policy, "namespace": agent.namespace},
        "spec": {
            "selector": {"matchLabels": {"app": agent.workload}},
            "upstreams": [{"name": "llm", "url": llm, "kind": "llm", "provider": "openai"}],
            "pricing": {"unknownModel": "default", "default": {"input": 1.0, "output": 4.0}},
            "budgets": budgets,
            "tools": {
                "default": "deny",
                "rules": [
                    {
                        "name": "small-models",
                        "action": "allow",
                        "kind": "llm",
                        "models": ["gpt-4o-mini*", "gpt-4o"],
                    }
                ],
            },
            "guardrails": {
                "pii": {"direction": "request", "action": "redact", "entities": ["email"]},
                "secrets": {"direction": "request", "action": "block"},
            },
        },
    }
    if agent.workload == "research":
        # Its tool mix is steady (LLM calls only): the drift gauges exist, score 0, no alert.
        doc["spec"]["drift"] = {
            "windowCalls": 10,
            "minSamples": 10,
            "dimensions": [{"name": "tool_mix"}],
        }
    return doc


def _start(
    fleet: Fleet, name: str, argv: list[str], ready_port: int, env: Mapping[str, str] | None = None
) -> ManagedProcess:
    proc = ManagedProcess(
        name, argv, fleet.workdir / f"{name}.log", env={**os.environ, **(env or {})}, cwd=REPO
    ).start()
    fleet.processes.append(proc)
    wait_until(
        lambda: port_open("127.0.0.1", ready_port),
        timeout=30,
        what=name,
        log=proc.log,
        alive=proc.alive,
    )
    return proc


@contextmanager
def running_fleet(
    workdir: Path, *, dsn: str | None = None, prometheus: str | None = None
) -> Iterator[Fleet]:
    """Start the fleet (and shippers when ``dsn`` is given); stop everything on exit."""
    prometheus = prometheus or prometheus_binary()
    if prometheus is None:
        raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
    workdir.mkdir(parents=True, exist_ok=True)
    venv_bin = Path(sys.executable).parent
    haltgate = str(venv_bin / "haltgate")
    llm_port = free_port()
    fleet = Fleet(workdir, f"http://127.0.0.1:{llm_port}", "", [], dsn)
    try:
        _start(
            fleet,
            "llm",
            [
                sys.executable,
                "-m",
                "haltgate.testbed.standins.llm",
                "--port",
                str(llm_port),
                "--no-record",
            ],
            llm_port,
        )
        token_file = workdir / "admin-token"
        token_file.write_text(ADMIN_TOKEN + "\n")
        for agent in AGENTS:
            name = f"{agent.namespace}-{agent.workload}"
            proxy, admin, metrics = free_port(), free_port(), free_port()
            policy = workdir / f"{name}.yaml"
            policy.write_text(yaml.safe_dump(_policy(agent, fleet.llm)))
            state = workdir / name
            _start(
                fleet,
                f"sidecar-{name}",
                [
                    haltgate,
                    "sidecar",
                    "--policy",
                    str(policy),
                    "--mode",
                    "explicit",
                    "--state-dir",
                    str(state),
                    "--admin-token-file",
                    str(token_file),
                    "--listen",
                    f"127.0.0.1:{proxy}",
                    "--admin-listen",
                    f"127.0.0.1:{admin}",
                    "--metrics-listen",
                    f"127.0.0.1:{metrics}",
                    "--agent-namespace",
                    agent.namespace,
                    "--agent-workload",
                    agent.workload,
                    "--policy-name",
                    agent.policy,
                    "--log-level",
                    "warning",
                ],
                metrics,
            )
            running = RunningAgent(
                agent,
                f"http://127.0.0.1:{proxy}",
                f"http://127.0.0.1:{admin}",
                f"127.0.0.1:{metrics}",
                state,
            )
            if dsn is not None:
                ship_port = free_port()
                _start(
                    fleet,
                    f"shipper-{name}",
                    [
                        haltgate,
                        "audit",
                        "ship",
                        "--spool",
                        str(state / "audit"),
                        "--metrics-port",
                        str(ship_port),
                    ],
                    ship_port,
                    env={"HALTGATE_AUDIT_DSN": dsn},
                )
                running.shipper_metrics = f"127.0.0.1:{ship_port}"
            fleet.agents.append(running)
        prom_port = free_port()
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "haltgate-sidecar",
                    "honor_labels": True,
                    "static_configs": [
                        {
                            "targets": [a.metrics],
                            "labels": {"pod": f"{a.agent.workload}-7d9f8-abcde"},
                        }
                        for a in fleet.agents
                    ],
                },
                {
                    "job_name": "haltgate-audit-shipper",
                    "static_configs": [
                        {
                            "targets": [a.shipper_metrics],
                            "labels": {
                                "namespace": a.agent.namespace,
                                "pod": f"{a.agent.workload}-shipper",
                            },
                        }
                        for a in fleet.agents
                        if a.shipper_metrics
                    ],
                },
            ],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        _start(
            fleet,
            "prometheus",
            [
                prometheus,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            prom_port,
        )
        fleet.prometheus = f"http://127.0.0.1:{prom_port}"
        wait_until(
            lambda: _targets_up(fleet),
            timeout=30,
            what="prometheus targets up",
            log=workdir / "prometheus.log",
        )
        yield fleet
    finally:
        for proc in reversed(fleet.processes):
            proc.stop()


def _targets_up(fleet: Fleet) -> bool:
    try:
        data = api(fleet, "/api/v1/targets")
    except (OSError, RuntimeError):
        return False
    active = data["activeTargets"]
    return bool(active) and all(t["health"] == "up" for t in active)


# ------------------------------------------------------------------------------ HTTP


def _request(
    url: str, body: Any = None, headers: Mapping[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method="POST" if data is not None else "GET",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def api(fleet: Fleet, path: str, **params: Any) -> Any:
    """Prometheus HTTP API: the ``data`` of a successful answer (raises otherwise)."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    status, body = _request(f"{fleet.prometheus}{path}" + (f"?{query}" if query else ""))
    doc = json.loads(body)
    if status != 200 or doc.get("status") != "success":
        raise RuntimeError(f"prometheus {path} {params}: {status} {body[:500]!r}")
    return doc["data"]


def chat(
    agent: RunningAgent, model: str, text: str, *, max_tokens: int = 64, slow: bool = False
) -> int:
    """One chat completion through the agent's sidecar; the HTTP status."""
    headers = {"x-standin-behavior": "slow"} if slow else {}
    status, _ = _request(
        f"{agent.proxy}/llm/v1/chat/completions",
        {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]},
        headers,
    )
    return status


def reset(agent: RunningAgent) -> int:
    status, _ = _request(
        f"{agent.admin}/reset",
        {"actor": "observability-test"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    return status


@dataclass
class LoadReport:
    sent: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    halts: int = 0
    started: float = 0.0
    ended: float = 0.0


def drive(
    fleet: Fleet, *, seconds: float, rounds_per_second: float = 4.0, halt_cycles: int = 6
) -> LoadReport:
    """Send load for ``seconds`` (bounded): every round, each busy agent makes a call."""
    report = LoadReport(started=time.time())
    busy = [a for a in fleet.agents if not a.agent.capped]
    capped = [a for a in fleet.agents if a.agent.capped]
    rounds = max(1, int(seconds * rounds_per_second))
    cycle_every = max(1, rounds // (halt_cycles + 1))
    for i in range(rounds):
        round_start = time.monotonic()
        for n, agent in enumerate(busy):
            model = "gpt-4o" if (i + n) % 3 == 0 else "gpt-4o-mini"
            if i % 11 == 5:
                model = "gpt-4.1"  # not allowed by the policy: refused
            text = (
                "please summarise the ticket from jane.doe@example.com"
                if i % 7 == 3
                else f"step {i} of the plan for agent {n}"
            )
            if i % 13 == 8:  # a credential in the prompt: blocked (SAFETY)
                text = "deploy with key ghp_4f8Kd92LmQz7XwR1tY6uV3bN0cP5sA8eJ2hG"
            status = chat(agent, model, text, max_tokens=32 + 16 * ((i + n) % 8), slow=(i % 9 == 4))
            key = agent.agent.workload
            report.sent[key] = report.sent.get(key, 0) + 1
            report.statuses[status] = report.statuses.get(status, 0) + 1
        for agent in capped:
            if i % cycle_every == cycle_every - 1 and report.halts < halt_cycles:
                # Spend the calls budget: the next call halts the run (EXHAUSTION).
                for _ in range(CAPPED_CALLS + 1):
                    status = chat(agent, "gpt-4o-mini", "batch item", max_tokens=16)
                    report.statuses[status] = report.statuses.get(status, 0) + 1
                report.halts += 1
                report.sent["batch"] = report.sent.get("batch", 0) + CAPPED_CALLS + 1
                if report.halts < halt_cycles:
                    # Let Prometheus see the halt before the next one (a new series
                    # starting above zero shows no increase).
                    time.sleep(1.2)
                    reset(agent)
        pause = 1.0 / rounds_per_second - (time.monotonic() - round_start)
        if pause > 0:
            time.sleep(pause)
    report.ended = time.time()
    return report


def wait_scraped(fleet: Fleet, timeout: float = 20.0) -> None:
    """Wait until Prometheus holds the final request counts of every sidecar."""

    def done() -> bool:
        expected = 0.0
        for a in fleet.agents:
            _, body = _request(f"http://{a.metrics}/metrics")
            for line in body.decode().splitlines():
                if line.startswith("haltgate_requests_total{"):
                    expected += float(line.rsplit(" ", 1)[1])
        got = api(fleet, "/api/v1/query", query="sum(haltgate_requests_total)")["result"]
        return bool(got) and abs(float(got[0]["value"][1]) - expected) < 0.5

    wait_until(done, timeout=timeout, what="prometheus caught up with the sidecars")


# ------------------------------------------------------------------------------ dashboards


def dashboard_queries(path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """``(panel title, expression, target)`` of every panel target of a dashboard file."""
    doc = json.loads(path.read_text())
    out = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"], target))
    return out
