"""The defaults stay out of a service mesh's way (issue: the old defaults were Envoy's UID
1337 and ports 15000-15090, so an Istio-injected pod was refused): neither the operator's
built-in injection settings nor those the chart renders by default use a UID or port that
Istio's or Linkerd's proxy uses in the same pod."""

from __future__ import annotations

from typing import Any

import yaml

from haltgate.operator import injection
from tests.chart.conftest import CHART, KUBE_VERSION, Helm

MESH_UIDS = {"istio": {1337}, "linkerd": {2102}}
MESH_PORTS = {
    # Envoy's pod-local ports (admin, outbound, debug, inbound, HBONE, telemetry, health,
    # DNS capture, Prometheus) sit in 15000-15099.
    "istio": set(range(15000, 15100)),
    "linkerd": {4140, 4143, 4190, 4191},
}


def _uids_and_ports(config: injection.InjectionConfig) -> tuple[dict[str, int], dict[str, int]]:
    uids = {"proxyUID": config.proxy_uid, "opaUID": config.opa_uid, "verifyUID": config.verify_uid}
    ports = {
        "explicitPort": config.explicit_port,
        "transparentPort": config.transparent_port,
        "adminPort": config.admin_port,
        "metricsPort": config.metrics_port,
        "opaPort": config.opa_port,
        "opaDiagnosticPort": config.opa_diagnostic_port,
        "shipperMetricsPort": config.shipper_metrics_port,
    }
    return uids, ports


def _assert_clear(config: injection.InjectionConfig, where: str) -> None:
    uids, ports = _uids_and_ports(config)
    for mesh in MESH_UIDS:
        for name, uid in uids.items():
            assert uid not in MESH_UIDS[mesh], f"{where}: {name} {uid} is {mesh}'s proxy UID"
        for name, port in ports.items():
            assert port not in MESH_PORTS[mesh], f"{where}: {name} {port} is a {mesh} port"
    assert len(set(ports.values())) == len(ports), ports


def test_operator_defaults_avoid_mesh_uids_and_ports() -> None:
    _assert_clear(injection.InjectionConfig(), "InjectionConfig()")


def test_chart_defaults_avoid_mesh_uids_and_ports(helm: Helm) -> None:
    out = helm(
        "template", "haltgate", str(CHART), "--namespace", "haltgate-system",
        "--kube-version", KUBE_VERSION,
    ).stdout  # fmt: skip
    docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(out) if d]
    (cm,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-injection")
    ]
    config = injection.InjectionConfig.from_mapping(
        yaml.safe_load(cm["data"]["injection-config.yaml"])
    )
    _assert_clear(config, "the chart's default values")
    # Nothing to declare for a mesh by default: the mesh settings are opt-in.
    assert config.mesh_proxy_uids == () and not config.mesh_containers
