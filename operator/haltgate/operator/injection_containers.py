"""haltgate's containers for one pod: which of them, in what start order, with which
environment, and with requests equal to limits for a Guaranteed pod."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from haltgate.operator.injection import InjectionConfig
from haltgate.operator.injection_outcome import PolicyRef

QOS_RESOURCES = ("cpu", "memory")


def is_guaranteed(spec: Mapping[str, Any]) -> bool:
    """The pod is of QoS class Guaranteed: every container sets cpu and memory limits, and
    requests (when set) equal them."""
    containers = list(spec.get("initContainers") or []) + list(spec.get("containers") or [])
    if not containers:
        return False
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        for name in QOS_RESOURCES:
            if name not in limits or str(requests.get(name, limits[name])) != str(limits[name]):
                return False
    return True


def make_guaranteed(container: dict[str, Any], cpu: str) -> None:
    """Requests equal to limits: memory at the template's limit, CPU ``cpu`` for the
    long-running containers (the run-once init step keeps its small request)."""
    res = container.get("resources") or {}
    limits, requests = dict(res.get("limits") or {}), dict(res.get("requests") or {})
    memory = limits.get("memory") or requests.get("memory")
    runs_once = container.get("restartPolicy") != "Always"
    both = {"cpu": requests.get("cpu", cpu) if runs_once else cpu, "memory": memory}
    container["resources"] = {"requests": dict(both), "limits": dict(both)}


def our_init_containers(
    rendered: Mapping[str, Any], policy: PolicyRef, config: InjectionConfig
) -> list[dict[str, Any]]:
    """haltgate's init containers, in start order: iptables step, shipper, proxy, OPA.

    The shipper starts before the proxy so that the kubelet, which stops native sidecars in
    reverse order, stops it after the proxy: it can ship the proxy's last records."""
    sidecar = copy.deepcopy(rendered["sidecar"])
    ours = [copy.deepcopy(rendered["initContainer"])] if config.redirect == "init" else []
    if config.audit_database_secret:
        ours.append(copy.deepcopy(rendered["shipperContainer"]))
    ours.append(sidecar)
    if policy.pool:
        sidecar.setdefault("env", []).extend(copy.deepcopy(rendered["sidecarEnvPool"]))
    if config.price_table is not None:
        sidecar.setdefault("env", []).extend(copy.deepcopy(rendered["sidecarEnvPrices"]))
    if policy.uses_opa:
        sidecar.setdefault("env", []).extend(copy.deepcopy(rendered["sidecarEnvOPA"]))
        ours.append(copy.deepcopy(rendered["opaContainer"]))
    if config.redirect == "node":
        # Last of ours, so the sidecar (a native sidecar) is up; before the agent's.
        ours.append(copy.deepcopy(rendered["verifyContainer"]))
    return ours


def volume_names(rendered: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(v["name"] for v in rendered["volumes"])
