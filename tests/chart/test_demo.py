"""`haltgate demo` end to end (its own control plane, PostgreSQL, OPA, operator, sidecar):
it must show each promised moment of the journey and exit 0, leaving nothing behind."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.chart.conftest import REPO

pytestmark = [pytest.mark.k8s, pytest.mark.postgres, pytest.mark.opa]


@pytest.mark.parametrize("mode", ["netns", "explicit"])
def test_demo_runs_the_whole_journey(mode: str, tmp_path: Path) -> None:
    if mode == "netns":
        from haltgate.testbed import netns as harness

        why = harness.skip_reason()
        if why is not None:
            pytest.skip(why)
    picture = tmp_path / "fleet.png"
    res = subprocess.run(
        [
            str(Path(sys.executable).parent / "haltgate"),
            "demo",
            "--mode",
            mode,
            "--dashboard",
            str(picture),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=False,
    )
    out = res.stdout
    assert res.returncode == 0, out[-3000:] + res.stderr[-3000:]
    for moment in (
        "the webhook injected it",
        "initContainer haltgate-proxy   native sidecar",
        "allowed   HTTP 200",
        "guardrail_secrets",
        "opa_denied",
        "tool_denied",
        "EXHAUSTION calls_exhausted",
        "halted for good",
        "$ haltgate audit history",
        "$ haltgate audit cost",
        "audit verify: OK",
        "haltgate_requests_total{",
    ):
        assert moment in out, f"missing {moment!r} in:\n{out[-3000:]}"
    # It ends with the fleet dashboard drawn from the Prometheus that scraped the sidecar.
    assert f"The fleet dashboard of this run: {picture}" in out
    assert picture.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # Its scratch directory is gone (other demos may run at the same time: only this one's).
    workdir = re.search(r"KUBECONFIG=(\S+)/cluster/kubeconfig", out)
    assert workdir and workdir.group(1).startswith(tempfile.gettempdir())
    assert not Path(workdir.group(1)).exists()
    if mode == "netns":
        assert "iptables rules in place" in out and "as UID 17337" in out
        # Its namespaces are gone too.
        names = set(re.findall(r"\b(hg-(?:pod|up)-\d+)\b", out))
        assert names
        listed = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=False
        ).stdout.split()
        assert not names & set(listed), listed
