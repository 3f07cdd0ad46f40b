"""Pod specs that would let the agent escape enforcement, checked before injection.

The sidecar only governs what the iptables rules send it. Anything that lets an agent
container change those rules, run as the UID they exempt, or reach into the sidecar's
process is refused. Pure functions over the pod dict.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

#: Capabilities that allow changing the pod's network set-up (or everything at once).
NET_CAPABILITIES = frozenset({"NET_ADMIN", "NET_RAW", "ALL"})


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a pod is refused: a stable code, the field path, and the reason."""

    code: str
    path: str
    reason: str


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for list_name in ("initContainers", "containers", "ephemeralContainers"):
        for i, c in enumerate(spec.get(list_name) or []):
            yield f"spec.{list_name}[{i}]", c


def _normalise_cap(cap: str) -> str:
    cap = cap.strip().upper()
    return cap.removeprefix("CAP_")


def refusals(
    pod: Mapping[str, Any],
    *,
    proxy_uid: int,
    reserved_containers: frozenset[str],
    reserved_volumes: frozenset[str],
    mesh_uids: tuple[int, ...] = (),
    mesh_containers: frozenset[str] = frozenset(),
) -> list[Refusal]:
    """Every reason to refuse ``pod`` (empty when it may be injected).

    ``mesh_uids`` are exempt from the redirection too (a service mesh's proxy): only the
    containers named in ``mesh_containers`` may run as them, and only those of them that
    are run-once init containers may add NET_ADMIN/NET_RAW (the mesh's iptables step)."""
    out: list[Refusal] = []
    spec = pod.get("spec") or {}
    pod_sc = spec.get("securityContext") or {}

    if spec.get("hostNetwork"):
        out.append(
            Refusal(
                "host_network",
                "spec.hostNetwork",
                "hostNetwork pods share the node's network: the egress redirection "
                "cannot be installed for them alone",
            )
        )
    if spec.get("hostPID"):
        out.append(
            Refusal(
                "host_pid",
                "spec.hostPID",
                "hostPID would let the agent see and signal the sidecar process",
            )
        )
    if spec.get("shareProcessNamespace"):
        out.append(
            Refusal(
                "share_process_namespace",
                "spec.shareProcessNamespace",
                "a shared process namespace would let the agent read the sidecar's "
                "secrets through /proc",
            )
        )
    for gid_path, gid in (("spec.securityContext.runAsGroup", pod_sc.get("runAsGroup")),):
        if gid == proxy_uid:
            out.append(
                Refusal(
                    "agent_runs_as_proxy_uid",
                    gid_path,
                    f"group {proxy_uid} is reserved for the haltgate sidecar",
                )
            )
    if proxy_uid in (pod_sc.get("supplementalGroups") or []):
        out.append(
            Refusal(
                "agent_runs_as_proxy_uid",
                "spec.securityContext.supplementalGroups",
                f"group {proxy_uid} is reserved for the haltgate sidecar",
            )
        )

    for path, c in _containers(spec):
        name = c.get("name", "")
        if name in reserved_containers:
            out.append(
                Refusal(
                    "name_conflict",
                    f"{path}.name",
                    f"container name {name!r} is reserved for haltgate",
                )
            )
        sc = c.get("securityContext") or {}
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        mesh = name in mesh_containers and not path.startswith("spec.ephemeralContainers")
        where = (
            f"{path}.securityContext.runAsUser"
            if "runAsUser" in sc
            else "spec.securityContext.runAsUser"
        )
        if uid in mesh_uids and not mesh:
            out.append(
                Refusal(
                    "agent_runs_as_proxy_uid",
                    where,
                    f"container {name!r} would run as UID {uid}, the service "
                    f"mesh proxy's, which the egress redirection exempts (only "
                    f"the mesh's own containers, injection.meshContainers, may)",
                )
            )
        if uid == proxy_uid:
            out.append(
                Refusal(
                    "agent_runs_as_proxy_uid",
                    where,
                    f"container {name!r} would run as UID {proxy_uid}, the UID the "
                    f"egress redirection exempts (reserved for the haltgate sidecar)",
                )
            )
        if sc.get("runAsGroup") == proxy_uid:
            out.append(
                Refusal(
                    "agent_runs_as_proxy_uid",
                    f"{path}.securityContext.runAsGroup",
                    f"container {name!r} would run as group {proxy_uid}, reserved "
                    f"for the haltgate sidecar",
                )
            )
        if sc.get("privileged"):
            out.append(
                Refusal(
                    "agent_privileged",
                    f"{path}.securityContext.privileged",
                    f"container {name!r} is privileged: it could rewrite the pod's iptables rules",
                )
            )
        added = [_normalise_cap(str(x)) for x in ((sc.get("capabilities") or {}).get("add") or [])]
        bad = sorted(set(added) & NET_CAPABILITIES)
        mesh_init = (
            mesh
            and path.startswith("spec.initContainers")
            and c.get("restartPolicy") != "Always"
            and "ALL" not in bad
        )
        if bad and not mesh_init:
            hint = (
                (
                    " (a service mesh's init container? list it in injection.meshContainers, "
                    "or use the mesh's CNI mode: docs/operations.md, \"Running next to a "
                    'mesh")'
                )
                if name.endswith("-init")
                else ""
            )
            out.append(
                Refusal(
                    "agent_net_capability",
                    f"{path}.securityContext.capabilities.add",
                    f"container {name!r} adds {', '.join(bad)}: it could rewrite "
                    f"the pod's iptables rules; only haltgate's init step may"
                    f"{hint}",
                )
            )

    for i, v in enumerate(spec.get("volumes") or []):
        if v.get("name") in reserved_volumes:
            out.append(
                Refusal(
                    "name_conflict",
                    f"spec.volumes[{i}].name",
                    f"volume name {v.get('name')!r} is reserved for haltgate",
                )
            )
    return out


def first_refusal(
    pod: Mapping[str, Any],
    *,
    proxy_uid: int,
    reserved_containers: frozenset[str],
    reserved_volumes: frozenset[str],
) -> Refusal | None:
    """The first reason to refuse, or None. Rules are checked in a fixed order."""
    found = refusals(
        pod,
        proxy_uid=proxy_uid,
        reserved_containers=reserved_containers,
        reserved_volumes=reserved_volumes,
    )
    return found[0] if found else None


def update_refusals(
    old: Mapping[str, Any], new: Mapping[str, Any], *, proxy_uid: int, ours: frozenset[str]
) -> list[Refusal]:
    """Reasons to refuse an UPDATE of an injected pod (including ``kubectl debug``'s
    ephemeral containers): haltgate's containers must stay as injected (their image is
    mutable on a live pod), and added ephemeral containers follow the agent rules."""
    out: list[Refusal] = []
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    before = {c.get("name"): c for c in old_spec.get("initContainers") or []}
    for i, c in enumerate(new_spec.get("initContainers") or []):
        name = c.get("name")
        if name in ours and c != before.get(name):
            out.append(
                Refusal(
                    "haltgate_container_changed",
                    f"spec.initContainers[{i}]",
                    f"container {name!r} is haltgate's and cannot be changed",
                )
            )
    old_names = {c.get("name") for c in old_spec.get("ephemeralContainers") or []}
    added = [
        (i, c)
        for i, c in enumerate(new_spec.get("ephemeralContainers") or [])
        if c.get("name") not in old_names
    ]
    for i, c in added:
        if c.get("targetContainerName") in ours:
            out.append(
                Refusal(
                    "ephemeral_targets_haltgate",
                    f"spec.ephemeralContainers[{i}].targetContainerName",
                    f"an ephemeral container may not join haltgate's container "
                    f"{c.get('targetContainerName')!r} (it could read its "
                    f"secrets through /proc)",
                )
            )
    probe = {
        "spec": {
            "securityContext": new_spec.get("securityContext") or {},
            "ephemeralContainers": [c for _, c in added],
        }
    }
    for r in refusals(
        probe, proxy_uid=proxy_uid, reserved_containers=ours, reserved_volumes=frozenset()
    ):
        # Re-anchor the path on the container's real index in the pod.
        if r.path.startswith("spec.ephemeralContainers["):
            j = int(r.path.split("[", 1)[1].split("]", 1)[0])
            rest = r.path.split("]", 1)[1]
            r = Refusal(r.code, f"spec.ephemeralContainers[{added[j][0]}]{rest}", r.reason)
        out.append(r)
    return out
