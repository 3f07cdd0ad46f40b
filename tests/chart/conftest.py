"""Fixtures of the chart tests: the pinned helm binary and rendering helpers."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from haltgate.testbed import binaries

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "haltgate"
TESTDATA = Path(__file__).parent / "testdata"
FULL_VALUES = TESTDATA / "values-full.yaml"
KUBE_VERSION = "1.34.0"

Helm = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """``helm(*args, check=True)``: the pinned build, with its caches in a temp dir."""
    exe = binaries.require("helm")
    home = tmp_path_factory.mktemp("helm-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    env.update(
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
    )

    def run(
        *args: str, check: bool = True, kubeconfig: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(exe), *args]
        if kubeconfig is not None:
            argv += ["--kubeconfig", str(kubeconfig)]
        res = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
        if check and res.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{res.stderr}")
        return res

    return run


def render(helm: Helm, *args: str, namespace: str = "haltgate-system") -> list[dict[str, Any]]:
    """``helm template`` the chart; the documents it renders (CRDs included)."""
    out = helm(
        "template",
        "haltgate",
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        "--include-crds",
        *args,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"{kind} *{name_suffix}: {len(found)} rendered"
    return found[0]
