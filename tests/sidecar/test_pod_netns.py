"""Which processes are a pod's: the pod UID as a whole cgroup path segment, in the forms the
kubelet's two cgroup drivers write, and nothing that merely contains it (pure)."""

from __future__ import annotations

import pytest

from haltgate.sidecar import pod_netns

UID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
CID = "a" * 64


def names(text: str) -> bool:
    return pod_netns.cgroup_names_pod(text, pod_netns._segment_pattern(UID))


@pytest.mark.parametrize(
    "line",
    [
        # systemd driver, cgroup v2 (QoS classes and Guaranteed).
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        f"{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope",
        f"0::/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{CID}.scope",
        # cgroupfs driver, cgroup v1 (any hierarchy line).
        f"12:pids:/kubepods/besteffort/pod{UID}/{CID}",
        # Seen from inside another cgroup namespace (the agent's own).
        f"0::/../../kubepods-besteffort-pod{UID.replace('-', '_')}.slice/"
        f"cri-containerd-{CID}.scope",
        # kind / nested nodes.
        f"0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
        f"kubelet-kubepods-besteffort-pod{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope",
    ],
)
def test_pod_cgroup_forms(line: str) -> None:
    assert names(f"1:name=systemd:/\n{line}\n")


@pytest.mark.parametrize(
    "line",
    [
        "0::/",
        f"0::/user.slice/session-pod{UID}-notes.scope",
        f"0::/kubepods/besteffort/pod{UID}x/{CID}",
        f"0::/kubepods/besteffort/xpod{UID}/{CID}",
        f"0::/kubepods/besteffort/pod{UID.replace('-', '_')}/{CID}",  # cgroupfs keeps dashes
        f"0::/kubepods.slice/kubepods-pod{UID}.slice/{CID}",  # systemd uses underscores
        "0::/kubepods/besteffort/pod2c4e28ba-2fa1-11d2-883f-0016d3cca427/" + CID,
    ],
)
def test_not_the_pod(line: str) -> None:
    assert not names(line)


def test_pod_uid_must_be_a_uuid() -> None:
    with pytest.raises(ValueError, match="pod uid"):
        pod_netns.scan(["../../x"])
