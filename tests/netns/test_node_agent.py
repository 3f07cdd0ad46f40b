"""The node agent on a node it did not set up: it finds a "pod" (a process in a network
namespace and in a cgroup whose path carries the pod's UID, as the kubelet makes them),
enters that namespace from the root one and installs the rules the pod's capability-free
verify step then sees; a restart changes nothing; a pod process in the node's own network
namespace gets nothing."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from haltgate.cli.node_agent import AgentSettings, NodeAgent
from haltgate.operator import (
    injection,
    injection_outcome,
    injection_template,
    node_redirect,
    pod_mutation,
)
from haltgate.sidecar import iptables as rules
from haltgate.sidecar import netns_rules, pod_netns
from haltgate.testbed import netns as harness
from tests.netns.conftest import SIDECAR_UID
from tests.netns.test_node_apply import LISTENER, _routed, _verify

pytestmark = pytest.mark.netns

NODE = "node-under-test"
CLUSTER_DNS = "10.96.0.10"


def cgroup_mount() -> tuple[Path, bool]:
    """A cgroup hierarchy to make pod cgroups in: cgroup v2 (``/sys/fs/cgroup``, or
    ``.../unified`` on hybrid hosts) with the systemd driver's names, else the v1 ``pids``
    hierarchy with the cgroupfs driver's names. (path, systemd names?)"""
    v1 = None
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[2] == "cgroup2":
            return Path(parts[1]), True
        if len(parts) > 3 and parts[2] == "cgroup" and "pids" in parts[3].split(","):
            v1 = Path(parts[1])
    if v1 is None:
        pytest.fail("no cgroup2 mount and no cgroup v1 pids hierarchy to make pod cgroups in")
    return v1, False


class PodCgroups:
    """Kubelet-shaped pod cgroups under a private root, removed afterwards."""

    def __init__(self) -> None:
        mount, self.systemd = cgroup_mount()
        self.root = mount / f"hgtest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.made: list[Path] = []

    def _mkdirs(self, *parts: str) -> Path:
        path = self.root
        for part in ("", *parts):
            path = path / part if part else path
            if not path.exists():
                path.mkdir()
                self.made.append(path)
        return path

    def add(self, pod_uid: str, pid: int) -> None:
        """Put ``pid`` in a container cgroup of the pod: ``kubepods.slice/kubepods-besteffort.
        slice/kubepods-besteffort-pod<uid_>.slice/cri-containerd-<id>.scope`` (systemd) or
        ``kubepods/besteffort/pod<uid>/<id>`` (cgroupfs)."""
        container = f"{uuid.uuid4().hex}{uuid.uuid4().hex}"
        if self.systemd:
            scope = self._mkdirs(
                "kubepods.slice",
                "kubepods-besteffort.slice",
                f"kubepods-besteffort-pod{pod_uid.replace('-', '_')}.slice",
                f"cri-containerd-{container}.scope",
            )
        else:
            scope = self._mkdirs("kubepods", "besteffort", f"pod{pod_uid}", container)
        (scope / "cgroup.procs").write_text(f"{pid}\n")

    def remove(self) -> None:
        for path in reversed(self.made):
            for _ in range(50):  # a killed process leaves its cgroup asynchronously
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


@pytest.fixture
def cgroups(netns_available: None) -> Iterator[PodCgroups]:
    made = PodCgroups()
    try:
        yield made
    finally:
        made.remove()


def injected_pod(uid: str) -> dict[str, Any]:
    """What the webhook makes of an agent pod with injection.redirect: node."""
    out = pod_mutation.mutate_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "agent", "namespace": "agents", "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "agent", "image": "x"}]},
        },
        namespace="agents",
        namespace_labels={"haltgate.dev/injection": "enabled"},
        policies=[
            injection_outcome.PolicyRef(name="p", generation=1, selector={"matchLabels": {}})
        ],
        config=injection.InjectionConfig(redirect="node"),
        template=injection_template.InjectionTemplate.load(
            injection_template.default_template_path()
        ),
    )
    assert isinstance(out, injection_outcome.Inject), out
    pod = out.pod
    pod["metadata"]["uid"] = uid
    pod["spec"]["nodeName"] = NODE
    pod["status"] = {"phase": "Pending"}
    return pod


class Events:
    """Stands in for the apiserver's Event API (outside the code under test)."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str, str]] = []

    def __call__(self, pod: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.posted.append((pod["metadata"]["uid"], type_, reason, message))

    def reasons(self, uid: str) -> list[str]:
        return [r for u, _, r, _ in self.posted if u == uid]


def new_agent(events: Events) -> NodeAgent:
    config = injection.InjectionConfig(redirect="node")
    template = injection_template.InjectionTemplate.load(injection_template.default_template_path())
    return NodeAgent(
        AgentSettings(
            node_name=NODE,
            base_args=tuple(node_redirect.template_apply_args(config, template)),
            cluster_dns=(CLUSTER_DNS,),
            node_dns=(),
        ),
        events,
    )


def rules_of(ns: harness.Netns) -> str:
    return ns.run(["iptables", "-S"]).stdout + ns.run(["iptables", "-t", "nat", "-S"]).stdout


def test_agent_finds_the_pod_by_cgroup_enters_its_namespace_and_verify_passes(
    bare_netns: harness.Netns, cgroups: PodCgroups, tmp_path: Path
) -> None:
    ns = bare_netns
    _routed(ns)
    other = harness.Netns(f"hg-other-{harness.free_tag()}")
    harness.run(["ip", "netns", "add", other.name])
    other.run(["ip", "link", "set", "lo", "up"])
    pod_uid, other_uid = str(uuid.uuid4()), str(uuid.uuid4())
    # The pod's sidecar container: listening on the transparent port, as the proxy UID.
    sidecar = ns.popen(
        [sys.executable, "-c", LISTENER, "17001"], uid=SIDECAR_UID, log=tmp_path / "sidecar.log"
    )
    # Another node-mode pod on the node whose namespace is not this one's.
    bystander = other.popen(["sleep", "300"])
    procs = [sidecar, bystander]
    try:
        for _ in range(50):
            if "ready" in (tmp_path / "sidecar.log").read_text():
                break
            time.sleep(0.1)
        cgroups.add(pod_uid, sidecar.pid)
        cgroups.add(other_uid, bystander.pid)
        assert pod_netns.scan([pod_uid])[pod_uid] == [sidecar.pid]
        before = _verify(ns)
        assert before.returncode == 1 and "redirect_missing" in before.stderr, before

        events = Events()
        agent = new_agent(events)
        now = time.monotonic()
        agent.observe("ADDED", injected_pod(pod_uid), now)
        agent.tick(now)
        assert events.reasons(pod_uid) == ["RedirectInstalled"], events.posted
        message = events.posted[0][3]
        assert f"DNS to {CLUSTER_DNS}" in message and "-> :17001" in message, message

        installed = rules_of(ns)
        assert "-A HALTGATE_OUTPUT -p tcp -j REDIRECT --to-ports 17001" in installed
        assert f"-A HALTGATE_OUTPUT -d {CLUSTER_DNS}/32 -p udp -m udp --dport 53" in installed
        root = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=30)
        assert "HALTGATE_OUTPUT" not in root.stdout
        assert "HALTGATE_OUTPUT" not in rules_of(other)  # only the pod it was told about
        after = _verify(ns)
        assert after.returncode == 0 and "redirect in place" in after.stdout, after

        # A restarted agent checks and finds them: nothing changes, no second Event.
        again = Events()
        restarted = new_agent(again)
        restarted.observe("ADDED", injected_pod(pod_uid), now)
        restarted.tick(now)
        assert again.posted == []
        assert not restarted.pods[pod_uid].pending
        assert rules_of(ns) == installed

        # The sandbox is replaced (a new network namespace, same pod UID): the next look
        # after the pod's status changes installs the rules there too.
        _routed(other)
        replacement = other.popen(
            [sys.executable, "-c", LISTENER, "17001"], uid=SIDECAR_UID, log=tmp_path / "r.log"
        )
        procs.append(replacement)
        for _ in range(50):
            if "ready" in (tmp_path / "r.log").read_text():
                break
            time.sleep(0.1)
        cgroups.add(pod_uid, replacement.pid)
        restarted.observe("MODIFIED", injected_pod(pod_uid), now)
        restarted.tick(now)
        assert again.reasons(pod_uid) == ["RedirectInstalled"], again.posted
        assert _verify(other).returncode == 0
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
        other.delete()


def test_agent_refuses_a_pod_process_in_the_node_namespace(cgroups: PodCgroups) -> None:
    """A hostNetwork-like pod (or a forged cgroup): the node's own rules are never touched."""
    pod_uid = str(uuid.uuid4())
    squatter = subprocess.Popen(["sleep", "300"])
    try:
        cgroups.add(pod_uid, squatter.pid)
        before = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=30)
        events = Events()
        agent = new_agent(events)
        now = time.monotonic()
        agent.observe("ADDED", injected_pod(pod_uid), now)
        agent.tick(now)
        assert events.reasons(pod_uid) == ["RedirectFailed"], events.posted
        assert "host_network" in events.posted[0][3]
        after = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=30)
        assert "HALTGATE_OUTPUT" not in after.stdout
        assert after.stdout.count("\n") == before.stdout.count("\n")
    finally:
        squatter.kill()
        squatter.wait(timeout=10)


def test_agent_reports_a_pod_with_no_process_on_the_node(netns_available: None) -> None:
    events = Events()
    agent = new_agent(events)
    agent.settings = dataclasses.replace(agent.settings, pending_grace_seconds=0.0)
    pod_uid = str(uuid.uuid4())
    now = time.monotonic()
    agent.observe("ADDED", injected_pod(pod_uid), now)
    agent.tick(now)
    agent.tick(now + 5)  # once per pod, however often it looks
    assert events.reasons(pod_uid) == ["RedirectPending"], events.posted
    assert agent.pods[pod_uid].pending


def _rule_lines(save: str) -> list[str]:
    """The rules of an ``iptables-save`` output (no comments, no counters)."""
    return [line for line in save.splitlines() if line.startswith(("-A ", "*"))]


@pytest.mark.parametrize(
    "tamper",
    [
        ["iptables", "-t", "nat", "-R", "HALTGATE_OUTPUT", "1", "-j", "RETURN"],  # a rule changed
        ["iptables", "-t", "filter", "-I", "HALTGATE_OUTPUT", "1", "-j", "RETURN"],  # one more
        ["iptables", "-t", "nat", "-D", "OUTPUT", "-p", "tcp", "-j", "HALTGATE_OUTPUT"],  # jump
        ["ip6tables", "-t", "filter", "-D", "HALTGATE_OUTPUT", "-j", "DROP"],  # IPv6 rule gone
    ],
    ids=["changed", "extra", "no-jump", "ipv6-missing"],
)
def test_check_before_install_sees_any_difference(
    bare_netns: harness.Netns, tamper: list[str]
) -> None:
    """The check, rule by rule and against the listing it learnt, finds a changed, extra or
    missing rule or jump; then the rules are installed again, exactly."""
    config = rules.RuleConfig(proxy_uid=SIDECAR_UID, dns_servers=(CLUSTER_DNS, "fd00::a"))
    fd = os.open(f"/run/netns/{bare_netns.name}", os.O_RDONLY)
    try:
        known: netns_rules.Listings = {}
        assert netns_rules.ensure_rules(fd, config, known=known) is netns_rules.Outcome.INSTALLED
        installed = (
            bare_netns.run(["iptables-save"]).stdout,
            bare_netns.run(["ip6tables-save"]).stdout,
        )
        assert known  # learnt from the rule-by-rule check
        for learnt in (known, None):  # against the listing, and rule by rule
            assert netns_rules.ensure_rules(fd, config, known=learnt) is (
                netns_rules.Outcome.PRESENT
            )
            bare_netns.run(tamper)
            assert netns_rules.ensure_rules(fd, config, known=learnt) is (
                netns_rules.Outcome.INSTALLED
            )
        again = bare_netns.run(["iptables-save"]).stdout, bare_netns.run(["ip6tables-save"]).stdout
        assert [_rule_lines(t) for t in again] == [_rule_lines(t) for t in installed]
    finally:
        os.close(fd)
