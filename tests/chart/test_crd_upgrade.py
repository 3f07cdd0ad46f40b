"""The documented CRD upgrade (NOTES.txt, docs/operations.md "CRDs and helm upgrade") over
CRDs that Helm itself installed and that changed in the new version, against the real
kube-apiserver: the plain server-side apply conflicts with Helm's ownership (the issue's
report), the documented ``--force-conflicts`` one succeeds and serves the new field.

The shipped GovernancePolicy CRD is installed under a group of this test's own (the
session's apiserver may already hold the real one, not installed by Helm), first without
one of its fields (the "old release"), by ``helm install`` from a chart's ``crds/``."""

from __future__ import annotations

import copy
import re
import uuid
from pathlib import Path
from typing import Any

import yaml

from haltgate.testbed.controlplane import ControlPlane
from tests.chart.conftest import CHART, Helm
from tests.operator.conftest import REPO, eventually

NEW_FIELD = "budgets"
"""The spec field the "old" CRD lacks."""


def _documented_command() -> list[str]:
    """The CRD command of NOTES.txt, which docs/operations.md shows too."""
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    docs = (REPO / "docs" / "operations.md").read_text()
    match = re.search(
        r"kubectl (apply --server-side --force-conflicts -f) charts/haltgate/crds/", notes
    )
    assert match and match.group(0) in docs, "NOTES.txt and the docs show another CRD command"
    return match.group(1).split()


def _crd(group: str, *, old: bool) -> dict[str, Any]:
    crd = yaml.safe_load((CHART / "crds" / "haltgate.dev_governancepolicies.yaml").read_text())
    crd = copy.deepcopy(crd)
    plural = crd["spec"]["names"]["plural"]
    crd["metadata"]["name"] = f"{plural}.{group}"
    crd["spec"]["group"] = group
    if old:
        for version in crd["spec"]["versions"]:
            spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
            spec["properties"].pop(NEW_FIELD)
            if NEW_FIELD in spec.get("required", []):
                spec["required"].remove(NEW_FIELD)
    return crd


def test_documented_crd_upgrade_over_helm_installed_changed_crds(
    kube: ControlPlane, helm: Helm, tmp_path: Path
) -> None:
    group = f"u{uuid.uuid4().hex[:8]}.haltgate.test"
    chart = tmp_path / "old-chart"
    (chart / "crds").mkdir(parents=True)
    (chart / "templates").mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: old\nversion: 0.1.0\n")
    (chart / "crds" / "policy.yaml").write_text(yaml.safe_dump(_crd(group, old=True)))
    new = tmp_path / "new-crds"
    new.mkdir()
    (new / "policy.yaml").write_text(yaml.safe_dump(_crd(group, old=False)))
    name = _crd(group, old=False)["metadata"]["name"]
    release = f"crd-{group[1:9]}"
    helm("install", release, str(chart), "--namespace", "default", kubeconfig=kube.kubeconfig)
    try:
        stored = kube.kubectl("get", "crd", name, "-o", "yaml", "--show-managed-fields")
        managers = {
            m["manager"] for m in yaml.safe_load(stored.stdout)["metadata"]["managedFields"]
        }
        assert "helm" in managers, managers

        plain = kube.kubectl("apply", "--server-side", "-f", str(new))
        assert plain.returncode != 0 and "conflict" in plain.stderr.lower(), plain

        res = kube.kubectl(*_documented_command(), str(new))
        assert res.returncode == 0, res.stderr

        def served() -> bool:
            got = yaml.safe_load(kube.kubectl("get", "crd", name, "-o", "yaml").stdout)
            props = got["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
            return NEW_FIELD in props["spec"]["properties"]

        eventually(served, timeout=30, what="the new field in the CRD")
        # Applying it again (a second upgrade, or a retry) is a no-op that still succeeds.
        again = kube.kubectl(*_documented_command(), str(new))
        assert again.returncode == 0, again.stderr
    finally:
        helm(
            "uninstall", release, "--namespace", "default", check=False, kubeconfig=kube.kubeconfig
        )
        kube.kubectl("delete", "crd", name, "--wait=false")
