"""The parts of e2e/ that need no Docker: the script's syntax, the chart with the e2e values
and the e2e manifests against the real kube-apiserver (server-side dry run), and the sample
agent governed by a real sidecar with the e2e policy until it is halted."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml

from haltgate.governance.validation import validate_document
from haltgate.testbed.controlplane import ControlPlane
from haltgate.testbed.process import ManagedProcess, free_port, port_open, wait_until
from tests.chart.conftest import CHART, KUBE_VERSION, REPO, Helm

E2E = REPO / "e2e"


def test_script_parses() -> None:
    res = subprocess.run(
        ["bash", "-n", str(E2E / "run.sh")], capture_output=True, text=True, timeout=10, check=False
    )
    assert res.returncode == 0, res.stderr


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_policy_is_valid() -> None:
    (policy,) = [
        d for d in _docs(E2E / "manifests" / "policy.yaml") if d["kind"] == "GovernancePolicy"
    ]
    assert validate_document(policy).issues == ()


def test_chart_and_manifests_pass_server_side_dry_run(
    kube: ControlPlane, helm: Helm, haltgate_crds: list[str]
) -> None:
    for ns in ("haltgate-system", "e2e-tools", "e2e-agents"):
        kube.kubectl("create", "namespace", ns)
    res = kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    assert res.returncode == 0, res.stderr
    manifest = helm(
        "template",
        "haltgate",
        str(CHART),
        "--namespace",
        "haltgate-system",
        "--kube-version",
        KUBE_VERSION,
        "-f",
        str(E2E / "values.yaml"),
    ).stdout
    assert 'image: "haltgate:e2e"' in manifest
    for text in (manifest, *(p.read_text() for p in sorted((E2E / "manifests").glob("*.yaml")))):
        res = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=text)
        assert res.returncode == 0, res.stderr


def test_sample_agent_is_halted_by_the_e2e_policy(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    procs: list[ManagedProcess] = []
    try:
        urls = {}
        for name in ("llm", "mcp"):
            port = free_port()
            module = f"haltgate.testbed.standins.{name}"
            procs.append(
                ManagedProcess(
                    name,
                    [sys.executable, "-m", module, "--port", str(port), "--no-record"],
                    tmp_path / f"{name}.log",
                    env=env,
                    cwd=REPO,
                ).start()
            )
            wait_until(lambda p=port: port_open("127.0.0.1", p), timeout=30, what=name)
            urls[name] = f"http://127.0.0.1:{port}"
        (policy,) = [
            d for d in _docs(E2E / "manifests" / "policy.yaml") if d["kind"] == "GovernancePolicy"
        ]
        policy = copy.deepcopy(policy)
        policy["spec"]["upstreams"][0]["url"] = urls["llm"]
        policy["spec"]["upstreams"][1]["url"] = urls["mcp"] + "/mcp"
        (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
        explicit, admin, metrics = free_port(), free_port(), free_port()
        procs.append(
            ManagedProcess(
                "sidecar",
                [
                    str(Path(sys.executable).parent / "haltgate"),
                    "sidecar",
                    "--policy",
                    str(tmp_path / "policy.yaml"),
                    "--mode",
                    "explicit",
                    "--audit-sink",
                    "memory",
                    "--listen",
                    f"127.0.0.1:{explicit}",
                    "--admin-listen",
                    f"127.0.0.1:{admin}",
                    "--metrics-listen",
                    f"127.0.0.1:{metrics}",
                ],
                tmp_path / "sidecar.log",
                env=env,
                cwd=REPO,
            ).start()
        )
        wait_until(lambda: port_open("127.0.0.1", explicit), timeout=30, what="sidecar")
        # In the pod the agent calls the Services and iptables routes it through the
        # sidecar; here it calls the sidecar's aliases for the same upstreams.
        res = subprocess.run(
            [sys.executable, str(E2E / "agent.py")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={
                **env,
                "LLM_URL": f"http://127.0.0.1:{explicit}/llm",
                "MCP_URL": f"http://127.0.0.1:{explicit}/tools",
                "AGENT_IDLE": "0",
            },
        )
    finally:
        for proc in procs:
            proc.stop()
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "delete_file: refused SAFETY tool_denied" in out, out
    assert "refused SAFETY guardrail_secrets" in out, out
    assert out.strip().splitlines()[-1] == "HALTED EXHAUSTION calls_exhausted", out
