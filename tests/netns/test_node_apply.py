"""The restricted-namespace path: rules installed from the node into a pod namespace the
installer did not create (`haltgate node apply --netns`), and the pod's capability-free
`haltgate iptables verify` step that passes only when they are in place."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from haltgate.testbed import netns as harness
from tests.netns.conftest import AGENT_UID, SIDECAR_UID

pytestmark = pytest.mark.netns

HALTGATE = str(Path(sys.executable).parent / "haltgate")
LISTENER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()
"""


def _routed(ns: harness.Netns) -> None:
    """A default route through a link with no one behind it: TEST-NET traffic is routable
    but goes nowhere, as in a pod."""
    ns.run(["ip", "link", "add", "hgv0", "type", "veth", "peer", "name", "hgv1"])
    ns.run(["ip", "addr", "add", "10.9.9.2/24", "dev", "hgv0"])
    ns.run(["ip", "link", "set", "hgv0", "up"])
    ns.run(["ip", "route", "add", "default", "via", "10.9.9.1"])


def _verify(ns: harness.Netns) -> subprocess.CompletedProcess[str]:
    return ns.run(
        [
            "setpriv",
            f"--reuid={AGENT_UID}",
            f"--regid={AGENT_UID}",
            "--clear-groups",
            HALTGATE,
            "iptables",
            "verify",
            "--attempts",
            "1",
            "--timeout",
            "1",
        ],
        check=False,
    )


def test_node_installs_rules_in_a_namespace_it_did_not_create_and_verify_sees_them(
    bare_netns: harness.Netns, tmp_path: Path
) -> None:
    ns = bare_netns
    _routed(ns)
    # The "sidecar": something listening on the transparent port (its UID is exempt).
    listener = ns.popen(
        [sys.executable, "-c", LISTENER, "17001"], uid=SIDECAR_UID, log=tmp_path / "listener.log"
    )
    try:
        for _ in range(50):
            if "ready" in (tmp_path / "listener.log").read_text():
                break
            subprocess.run(["sleep", "0.1"], check=True)
        before = _verify(ns)
        assert before.returncode == 1 and "redirect_missing" in before.stderr, before
        # From the root namespace, like a node agent: enter the pod's namespace by path.
        res = subprocess.run(
            [
                HALTGATE,
                "node",
                "apply",
                "--netns",
                f"/run/netns/{ns.name}",
                "--",
                "--proxy-uid",
                str(SIDECAR_UID),
                "--no-dns",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        saved = ns.run(["iptables-save"]).stdout
        assert "-A HALTGATE_OUTPUT -p tcp -j REDIRECT --to-ports 17001" in saved
        # The root namespace got nothing.
        root = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=30)
        assert "HALTGATE_OUTPUT" not in root.stdout
        after = _verify(ns)
        assert after.returncode == 0 and "redirect in place" in after.stdout, after
    finally:
        listener.kill()
        listener.wait(timeout=10)
