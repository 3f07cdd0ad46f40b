"""Find a pod's network namespaces on its node, from ``/proc``, by the pod's UID.

The node agent runs with the node's PID namespace (``hostPID``). Every container of a pod
(its pause/sandbox process included) lives in a cgroup whose path names the pod UID:

- systemd driver: ``.../kubepods-burstable-pod1b4e_..._9c.slice/cri-containerd-<id>.scope``
  (the UID's dashes become underscores);
- cgroupfs driver: ``.../kubepods/burstable/pod1b4e-...-9c/<id>``.

A process is the pod's when one path segment of one of its cgroup lines is exactly such a
pod segment (a UID elsewhere in a name does not count). Its network namespace is opened by
descriptor, then the process's cgroup is read again, so a PID reused between the scan and the
open never hands out another process's namespace. A namespace that is the node's own (a
``hostNetwork`` pod, or a bug) is refused: installing the pod rules there would cut the node
off.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


class PodNetnsError(Exception):
    """A pod's namespace cannot be used; ``code`` is stable for events and logs."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True, slots=True)
class NetnsId:
    """Identity of a network namespace: the (device, inode) of its nsfs file."""

    dev: int
    ino: int

    def __str__(self) -> str:
        return f"net:[{self.ino}]"


@dataclass(frozen=True, slots=True)
class PodNetns:
    """One network namespace of a pod, held open by descriptor ``fd`` (closed by
    :func:`open_pod_netns` on exit)."""

    fd: int
    ident: NetnsId
    pid: int
    """A process of the pod in it (for messages; the descriptor is what is used)."""


def is_pod_uid(value: str) -> bool:
    """A Kubernetes object UID (a UUID in its canonical text form)."""
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _segment_pattern(pod_uid: str) -> re.Pattern[str]:
    try:
        canonical = str(uuid.UUID(pod_uid))
    except ValueError as e:
        raise ValueError(f"pod uid: not a UUID: {pod_uid!r}") from e
    dashed = re.escape(canonical)
    underscored = re.escape(canonical.replace("-", "_"))
    # "pod<uid>" (cgroupfs) or "<prefix>-pod<uid_>.slice" (systemd), whole segment.
    return re.compile(rf"^(?:pod{dashed}|(?:[A-Za-z0-9_-]+-)?pod{underscored}\.slice)$")


def cgroup_names_pod(cgroup_text: str, pattern: re.Pattern[str]) -> bool:
    """Whether one of the cgroup lines (``hierarchy:controllers:path``) has a path segment
    that is the pod's (pure)."""
    for line in cgroup_text.splitlines():
        path = line.split(":", 2)[-1]
        if any(pattern.match(segment) for segment in path.split("/")):
            return True
    return False


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None  # the process exited, or is not ours to read


def _pids(proc: Path) -> Iterator[int]:
    try:
        names = os.listdir(proc)
    except OSError:
        return
    for name in names:
        if name.isdigit():
            yield int(name)


def scan(pod_uids: Iterable[str], proc: Path = PROC) -> dict[str, list[int]]:
    """PIDs of each pod's processes on this node, in one pass over ``/proc``."""
    patterns = {u: _segment_pattern(u) for u in pod_uids}
    found: dict[str, list[int]] = {u: [] for u in patterns}
    if not patterns:
        return found
    for pid in _pids(proc):
        text = _read(proc / str(pid) / "cgroup")
        if not text or "pod" not in text:
            continue
        for pod_uid, pattern in patterns.items():
            if cgroup_names_pod(text, pattern):
                found[pod_uid].append(pid)
                break
    return found


def _ident(fd: int) -> NetnsId:
    st = os.fstat(fd)
    return NetnsId(st.st_dev, st.st_ino)


def node_netns(proc: Path = PROC) -> set[NetnsId]:
    """Network namespaces that are the node's, never a pod's: that of PID 1 (the node's init,
    under hostPID), of PID 2 (``kthreadd``: the kernel's initial namespace, even where PID 1
    is not readable) and the agent's own. Those that cannot be read are left out."""
    found = set()
    for pid in ("1", "2", "self"):
        try:
            st = os.stat(proc / pid / "ns" / "net")
        except OSError:
            continue
        found.add(NetnsId(st.st_dev, st.st_ino))
    return found


@contextmanager
def open_pod_netns(
    pod_uid: str, pids: Iterable[int], proc: Path = PROC
) -> Iterator[list[PodNetns]]:
    """The distinct network namespaces of the pod's processes ``pids``, opened.

    Usually one (every container shares the sandbox's); two while a sandbox is being
    replaced. Raises :class:`PodNetnsError` (``host_network``) if one of them is the node's.
    """
    pattern = _segment_pattern(pod_uid)
    host = node_netns(proc)
    opened: dict[NetnsId, PodNetns] = {}
    try:
        for pid in pids:
            try:
                fd = os.open(proc / str(pid) / "ns" / "net", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue  # exited since the scan
            # Still the pod's process after the open: a reused PID is not trusted.
            text = _read(proc / str(pid) / "cgroup")
            ident = _ident(fd)
            if text is None or not cgroup_names_pod(text, pattern) or ident in opened:
                os.close(fd)
                continue
            if ident in host:
                os.close(fd)
                raise PodNetnsError(
                    "host_network",
                    f"process {pid} of pod {pod_uid} is in the node's network namespace; "
                    "refusing to install pod rules there (hostNetwork pods cannot be governed)",
                )
            opened[ident] = PodNetns(fd, ident, pid)
        yield list(opened.values())
    finally:
        for found in opened.values():
            os.close(found.fd)
