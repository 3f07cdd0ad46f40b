"""The order the docs promise, agent -> haltgate -> mesh proxy, held by the node agent in a
namespace it did not create: haltgate's jump must be the first rule of ``OUTPUT``. A mesh
whose rules were there before (Istio CNI appends its jump at sandbox set-up) stays after
haltgate's; a rule inserted ahead of haltgate's later (a mesh's init step that inserts at
the top) is found on the next periodic look, reported and moved back, and the pod's verify
step, which the rule ahead had broken, passes again."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from haltgate.testbed import netns as harness
from tests.netns.conftest import SIDECAR_UID
from tests.netns.test_node_agent import Events, PodCgroups, cgroups, injected_pod, new_agent
from tests.netns.test_node_apply import LISTENER, _routed, _verify

pytestmark = pytest.mark.netns
__all__ = ["cgroups"]  # the fixture, shared with test_node_agent.py

MESH_CHAIN = "ISTIO_OUTPUT"
MESH_PORT = "15001"  # nothing listens there: a connection sent to the "mesh" is refused


def _nat_output(ns: harness.Netns) -> list[str]:
    out = ns.run(["iptables", "-t", "nat", "-S", "OUTPUT"]).stdout
    return [line for line in out.splitlines() if line.startswith("-A OUTPUT")]


def _mesh_chain(ns: harness.Netns) -> None:
    """Istio's nat chain: every TCP connection to Envoy's outbound port."""
    ns.run(["iptables", "-t", "nat", "-N", MESH_CHAIN])
    ns.run(["iptables", "-t", "nat", "-A", MESH_CHAIN, "-p", "tcp", "-j", "REDIRECT",
            "--to-ports", MESH_PORT])  # fmt: skip


@pytest.fixture
def pod(
    bare_netns: harness.Netns, cgroups: PodCgroups, tmp_path: Path
) -> Iterator[tuple[harness.Netns, str]]:
    """A node-mode pod: its sidecar listening on 17001 as the proxy UID, in a routed
    namespace, in a kubelet-shaped cgroup carrying the pod UID."""
    _routed(bare_netns)
    sidecar = bare_netns.popen(
        [sys.executable, "-c", LISTENER, "17001"], uid=SIDECAR_UID, log=tmp_path / "sidecar.log"
    )
    try:
        for _ in range(50):
            if "ready" in (tmp_path / "sidecar.log").read_text():
                break
            time.sleep(0.1)
        pod_uid = str(uuid.uuid4())
        cgroups.add(pod_uid, sidecar.pid)
        yield bare_netns, pod_uid
    finally:
        sidecar.kill()
        sidecar.wait(timeout=10)


def test_mesh_rules_already_there_stay_after_haltgates(pod: tuple[harness.Netns, str]) -> None:
    """Istio CNI's rules come first in time (CNI ADD, before any pod process) and are
    appended: haltgate's jump goes ahead of them, theirs stays, and a restarted agent finds
    the pair in the documented order and changes nothing."""
    ns, pod_uid = pod
    _mesh_chain(ns)
    ns.run(["iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", MESH_CHAIN])
    events = Events()
    agent = new_agent(events)
    now = time.monotonic()
    agent.observe("ADDED", injected_pod(pod_uid), now)
    agent.tick(now)
    assert events.reasons(pod_uid) == ["RedirectInstalled"], events.posted
    assert _nat_output(ns) == [
        "-A OUTPUT -p tcp -j HALTGATE_OUTPUT",
        f"-A OUTPUT -p tcp -j {MESH_CHAIN}",
    ]
    assert _verify(ns).returncode == 0

    again = Events()
    restarted = new_agent(again)
    restarted.observe("ADDED", injected_pod(pod_uid), now)
    restarted.tick(now)
    assert again.posted == [] and not restarted.pods[pod_uid].pending


def test_a_rule_inserted_ahead_later_is_reported_and_moved_back(
    pod: tuple[harness.Netns, str],
) -> None:
    ns, pod_uid = pod
    events = Events()
    agent = new_agent(events)
    now = time.monotonic()
    agent.observe("ADDED", injected_pod(pod_uid), now)
    agent.tick(now)
    assert events.reasons(pod_uid) == ["RedirectInstalled"], events.posted
    installed = ns.run(["iptables-save", "-t", "nat"]).stdout
    assert _verify(ns).returncode == 0

    # Later, a mesh's init step inserts its jump at the top: the agent's connections now
    # reach the mesh first (here: a port where nothing listens) and verify fails.
    _mesh_chain(ns)
    ns.run(["iptables", "-t", "nat", "-I", "OUTPUT", "1", "-p", "tcp", "-j", MESH_CHAIN])
    assert _nat_output(ns)[0] == f"-A OUTPUT -p tcp -j {MESH_CHAIN}"
    broken = _verify(ns)
    assert broken.returncode == 1, broken

    # Without a pod event, the pod's rules are not looked at again...
    agent.tick(now + 1)
    assert _nat_output(ns)[0] == f"-A OUTPUT -p tcp -j {MESH_CHAIN}"
    # ...until the periodic look (nodeAgent.resyncSeconds), which checks every namespace.
    agent.resync()
    agent.tick(now + 2)
    assert events.reasons(pod_uid) == ["RedirectInstalled", "RedirectReordered"], events.posted
    message = events.posted[-1][3]
    assert events.posted[-1][1] == "Warning" and "ahead of haltgate's jump" in message, message
    assert _nat_output(ns) == [
        "-A OUTPUT -p tcp -j HALTGATE_OUTPUT",
        f"-A OUTPUT -p tcp -j {MESH_CHAIN}",
    ]
    chain = [line for line in installed.splitlines() if line.startswith("-A HALTGATE_OUTPUT")]
    after = ns.run(["iptables-save", "-t", "nat"]).stdout
    assert [line for line in after.splitlines() if line.startswith("-A HALTGATE_OUTPUT")] == chain
    assert _verify(ns).returncode == 0

    # The filter table is held to the same place: an ACCEPT put first would pass what
    # haltgate's chain drops.
    ns.run(["iptables", "-I", "OUTPUT", "1", "-j", "ACCEPT"])
    agent.resync()
    agent.tick(now + 3)
    first = [x for x in ns.run(["iptables", "-S", "OUTPUT"]).stdout.splitlines() if "-A" in x]
    assert first[:2] == ["-A OUTPUT -j HALTGATE_OUTPUT", "-A OUTPUT -j ACCEPT"], first
    # Reported once per namespace, however often a mesh does it.
    assert events.reasons(pod_uid).count("RedirectReordered") == 1
