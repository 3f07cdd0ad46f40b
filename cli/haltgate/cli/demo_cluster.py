"""The demo's Kubernetes steps: the control plane, the operator, and `kubectl apply` of the
GovernancePolicy and the annotated agent Deployment the webhook injects."""

from __future__ import annotations

import json
from typing import Any

import yaml

from haltgate.cli.demo_setting import CALL_LIMIT, NAMESPACE, OPERATOR_NAMESPACE, POLICY_NAME, REGO
from haltgate.cli.demo_shell import clean_env, http_call, wait_for
from haltgate.cli.demo_state import Demo


def policy_document(d: Demo) -> dict[str, Any]:
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": POLICY_NAME, "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"app": POLICY_NAME}},
            "upstreams": [
                {"name": "llm", "url": d.urls["llm"], "kind": "llm", "provider": "openai"},
                {"name": "tools", "url": d.urls["mcp"] + "/mcp", "kind": "mcp"},
            ],
            "budgets": {
                "calls": {"limit": CALL_LIMIT},
                "costUSD": {"limit": 1.0},
                "warnAt": 0.75,
            },
            "tools": {
                "default": "deny",
                "rules": [
                    {"name": "llm", "action": "allow", "kind": "llm"},
                    {
                        "name": "research-tools",
                        "action": "allow",
                        "kind": "mcp",
                        "mcpTools": ["search", "echo"],
                    },
                    {
                        "name": "no-deletes",
                        "action": "deny",
                        "kind": "mcp",
                        "mcpTools": ["delete_file"],
                    },
                ],
            },
            "guardrails": {"secrets": {"direction": "request", "action": "block"}},
            "opa": {"rego": REGO},
        },
    }


def control_plane(d: Demo) -> None:
    from haltgate.testbed.controlplane import WORKLOAD_CONTROLLERS, ControlPlane, install_crds

    d.console.step("Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager")
    plane = ControlPlane(d.workdir / "cluster", controllers=WORKLOAD_CONTROLLERS)
    d.stack.callback(plane.stop)
    plane.start()
    d.kube = plane
    crds = install_crds(plane, d.repo / "crds")
    for ns in (OPERATOR_NAMESPACE, NAMESPACE):
        d.kubectl("create", "namespace", ns)
    d.console.ok(f"apiserver {plane.server}; CRDs: {', '.join(crds)}")
    d.console.info(f"KUBECONFIG={plane.kubeconfig}")


def operator(d: Demo) -> None:
    d.console.step("haltgate operator (admission webhooks over HTTPS)")
    webhook, health, metrics = d.free_port(), d.free_port(), d.free_port()
    config = d.workdir / "injection.yaml"
    config.write_text(yaml.safe_dump({"image": "ghcr.io/haltgate/haltgate:0.1.0"}))
    env = {**clean_env(), "KUBECONFIG": str(d.kube.kubeconfig)}
    proc = d.spawn(
        "operator",
        [
            d.haltgate,
            "operator",
            "--namespace",
            OPERATOR_NAMESPACE,
            "--webhook-host",
            "127.0.0.1",
            "--webhook-port",
            str(webhook),
            "--webhook-url",
            f"https://127.0.0.1:{webhook}",
            "--work-dir",
            str(d.workdir / "operator"),
            "--injection-config",
            str(config),
            "--health-port",
            str(health),
            "--metrics-port",
            str(metrics),
            "--halt-resync",
            "1",
            "--status-resync",
            "2",
        ],
        env=env,
    )
    wait_for(
        lambda: http_call("GET", f"http://127.0.0.1:{health}/healthz")[0] == 200,
        timeout=60,
        what="operator",
        alive=proc.alive,
        log=d.workdir / "logs" / "operator.log",
    )
    wait_for(
        lambda: (
            d.kube.kubectl("get", "mutatingwebhookconfiguration", "haltgate-injector").returncode
            == 0
        ),
        timeout=30,
        what="webhook configurations",
    )
    d.console.ok(
        "operator healthy; it registered MutatingWebhookConfiguration "
        "haltgate-injector and ValidatingWebhookConfiguration haltgate-validator"
    )


def apply_workload(d: Demo) -> None:
    d.console.step("kubectl apply: a GovernancePolicy and an annotated agent Deployment")
    policy_file = d.workdir / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy_document(d), sort_keys=False))
    d.console.info(f"$ kubectl apply -f {policy_file.name}")
    d.console.info(d.kubectl("apply", "-f", str(policy_file)))
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": POLICY_NAME, "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": POLICY_NAME}},
            "template": {
                "metadata": {
                    "labels": {"app": POLICY_NAME},
                    "annotations": {"haltgate.dev/inject": "true"},
                },
                "spec": {"containers": [{"name": "agent", "image": "example/researcher:1"}]},
            },
        },
    }
    d.console.info(
        "$ kubectl apply -f agent-deployment.yaml   "
        '# pod template annotated haltgate.dev/inject: "true"'
    )
    d.console.info(d.kubectl("apply", "-f", "-", input=yaml.safe_dump(deployment)))

    def injected() -> dict[str, Any] | None:
        pods = json.loads(
            d.kubectl("-n", NAMESPACE, "get", "pods", "-l", f"app={POLICY_NAME}", "-o", "json")
        )["items"]
        return next(
            (p for p in pods if "haltgate.dev/injected" in p["metadata"].get("annotations", {})),
            None,
        )

    pod = wait_for(injected, timeout=60, what="the Deployment's pod, injected")
    spec = pod["spec"]
    d.console.ok(
        f"kube-controller-manager created pod {pod['metadata']['name']}; the webhook injected it:"
    )
    for c in spec.get("initContainers", []):
        kind = "native sidecar" if c.get("restartPolicy") == "Always" else "init step"
        d.console.info(
            f"  initContainer {c['name']:<16} {kind:<15} "
            f"{' '.join([*c.get('command', []), *c.get('args', [])][:3])}"
        )
    for c in spec["containers"]:
        env = ", ".join(e["name"] for e in c.get("env", []))
        d.console.info(f"  container     {c['name']:<16} agent           env: {env}")
    record = json.loads(pod["metadata"]["annotations"]["haltgate.dev/injected"])
    d.console.info(
        f"  annotation haltgate.dev/injected: policy={record.get('policy')} "
        f"mode={record.get('mode')}"
    )

    def policy_status() -> dict[str, Any] | None:
        st = (
            json.loads(d.kubectl("-n", NAMESPACE, "get", "govpol", POLICY_NAME, "-o", "json")).get(
                "status"
            )
            or {}
        )
        return st if st.get("observedGeneration") else None

    status = wait_for(policy_status, timeout=30, what="policy status")
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    d.console.ok(
        f"policy status: {conditions}; ConfigMap haltgate-policy-{POLICY_NAME} "
        "rendered for the sidecars"
    )
