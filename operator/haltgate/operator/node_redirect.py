"""What the node agent installs for a pod injected with ``injection.redirect: node`` (pure).

The rules come from the same injection config and template the webhook used (the chart
mounts one ConfigMap into both): the template's ``initContainer`` arguments, i.e. exactly
what the init container would have run in ``init`` mode, plus the pod's DNS resolvers. The
resolvers are derived from the pod's spec the way the kubelet writes its resolv.conf, not
read from a file inside the pod, which an agent container could rewrite before a later
re-check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from haltgate.operator.injection import (
    ANNOTATION_INJECTED,
    LABEL_POLICY,
    VERIFY_CONTAINER_NAME,
    InjectionConfig,
)
from haltgate.operator.injection_template import InjectionTemplate

MAX_NAMESERVERS = 3
"""The kubelet keeps the first three nameservers of a pod (glibc reads no more)."""

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


class NodeRedirectError(ValueError):
    """The pod or the template cannot give a rule set; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def is_node_mode(pod: Mapping[str, Any]) -> bool:
    """The webhook injected this pod for a node-side installer: it carries the injection
    record and the capability-free verify step (and no iptables init container)."""
    meta = pod.get("metadata") or {}
    if ANNOTATION_INJECTED not in (meta.get("annotations") or {}):
        return False
    init = (pod.get("spec") or {}).get("initContainers") or []
    return any(c.get("name") == VERIFY_CONTAINER_NAME for c in init)


def is_finished(pod: Mapping[str, Any]) -> bool:
    """Deleted or done: no container of it will start again."""
    meta = pod.get("metadata") or {}
    phase = (pod.get("status") or {}).get("phase")
    return bool(meta.get("deletionTimestamp")) or phase in TERMINAL_PHASES


def resolvers(
    pod: Mapping[str, Any], cluster_dns: Sequence[str], node_dns: Sequence[str]
) -> list[str]:
    """The pod's nameservers, as the kubelet computes them from ``dnsPolicy``.

    ``cluster_dns`` is the kubelet's ``clusterDNS`` (what a ClusterFirst pod on this node
    gets); ``node_dns`` the node's own resolvers (``dnsPolicy: Default``).
    """
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        raise NodeRedirectError(
            "spec.hostNetwork", "a pod on the node's network cannot be given pod egress rules"
        )
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    extra = list(((spec.get("dnsConfig") or {}).get("nameservers")) or [])
    if policy == "None":
        base: list[str] = []
    elif policy == "Default":
        base = list(node_dns)
    elif policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        base = list(cluster_dns)
    else:
        raise NodeRedirectError("spec.dnsPolicy", f"unknown DNS policy {policy!r}")
    out: list[str] = []
    for server in base + extra:
        if server not in out:
            out.append(server)
    return out[:MAX_NAMESERVERS]


def template_apply_args(config: InjectionConfig, template: InjectionTemplate) -> list[str]:
    """The ``haltgate iptables apply`` arguments of the template's init container."""
    rendered = template.render(config.template_values(policy="node-agent", mode="transparent"))
    init = rendered.get("initContainer") or {}
    args = [str(a) for a in init.get("args") or []]
    if list(init.get("command") or []) != ["haltgate"] or args[:2] != ["iptables", "apply"]:
        raise NodeRedirectError(
            "initContainer",
            "the injection template's init container must run `haltgate iptables apply ...` "
            "(the node agent installs the same rules)",
        )
    return args[2:]


def apply_args(base_args: Sequence[str], dns: Sequence[str]) -> list[str]:
    """``iptables apply`` arguments for one pod: the template's, and its resolvers."""
    out = list(base_args)
    if dns:
        for server in dns:
            out += ["--dns", server]
    else:
        out.append("--no-dns")
    return out


def describe(pod: Mapping[str, Any]) -> str:
    """``namespace/name`` (policy) of a pod, for logs."""
    meta = pod.get("metadata") or {}
    policy = (meta.get("labels") or {}).get(LABEL_POLICY, "?")
    return f"{meta.get('namespace')}/{meta.get('name')} (policy {policy})"
