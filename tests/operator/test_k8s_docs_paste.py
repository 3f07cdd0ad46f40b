"""The README's and the quick start's install commands work as written (after `helm
install`, which tests/chart covers): the namespace exists, the policy selects the app the
commands annotate, and the rollout brings an injected pod."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from haltgate.operator import injection
from haltgate.testbed.controlplane import ControlPlane
from tests.operator.conftest import (
    REPO,
    OperatorUnderTest,
    eventually,
    kubectl_json,
    opt_in_namespace,
)

pytestmark = pytest.mark.k8s


def commands(doc: Path) -> list[list[str]]:
    """The kubectl commands of the first code block that runs `helm install`."""
    text = doc.read_text()
    for block in re.findall(r"```(?:bash)?\n(.*?)```", text, re.S):
        if "helm install haltgate" not in block:
            continue
        out = []
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("kubectl "):
                out.append(shlex.split(line)[1:])
        return out
    raise AssertionError(f"{doc}: no install block")


@pytest.mark.parametrize("doc", ["README.md", "docs/quickstart.md"])
def test_install_commands_paste(
    doc: str, kube_workloads: ControlPlane, operator_running: OperatorUnderTest
) -> None:
    kube = kube_workloads
    cmds = commands(REPO / doc)
    assert any(c[:2] == ["create", "namespace"] for c in cmds), cmds
    kube.kubectl("delete", "namespace", "agents", "--wait=true", "--timeout=60s")
    try:
        for args in cmds:
            # Paths as written, relative to the repository root.
            args = [str(REPO / a) if a.startswith("docs/") else a for a in args]
            res = kube.kubectl(*args)
            assert res.returncode == 0, (args, res.stderr)
            assert "Warning" not in res.stderr, (args, res.stderr)
            if args[:3] == ["create", "namespace", "agents"]:
                # What `helm install --set operator.agentNamespaces={agents}` binds there.
                opt_in_namespace(kube, "agents")

        def injected() -> list[str]:
            pods = kubectl_json(kube, "-n", "agents", "get", "pods", "-l", "app=research-agent")[
                "items"
            ]
            return [
                p["metadata"]["name"]
                for p in pods
                if injection.ANNOTATION_INJECTED in (p["metadata"].get("annotations") or {})
            ]

        eventually(injected, timeout=60, what=f"{doc}: injected research-agent pod")
    finally:
        kube.kubectl("delete", "namespace", "agents", "--wait=false")
