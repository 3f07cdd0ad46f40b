"""The test control plane behaves like a cluster where haltgate's tests need it to."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from haltgate.testbed.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
WAIT = 60.0  # seconds; bounded waits for controllers


def _eventually(check: Any, what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def test_python_client_talks_to_a_real_apiserver(kube: ControlPlane) -> None:
    api = client.VersionApi(kube.api_client())
    info = api.get_code()
    assert (info.major, info.minor) == ("1", "34")
    assert kube.server.startswith("https://127.0.0.1:")
    assert kube.ca_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


def test_rbac_is_enforced(kube: ControlPlane, kube_namespace: str) -> None:
    # The admin may impersonate a service account; that account has no rights by default.
    sa = "nobody"
    kube.kubectl("create", "serviceaccount", sa, "-n", kube_namespace, check=True)
    out = kube.kubectl(
        "auth",
        "can-i",
        "list",
        "secrets",
        "-n",
        kube_namespace,
        f"--as=system:serviceaccount:{kube_namespace}:{sa}",
    )
    assert out.stdout.strip() == "no"
    assert kube.kubectl("auth", "can-i", "list", "secrets", "-A").stdout.strip() == "yes"


def test_pods_can_be_created_and_stay_pending(kube: ControlPlane, kube_namespace: str) -> None:
    core = client.CoreV1Api(kube.api_client())
    # ServiceAccount admission needs the namespace's `default` account: the
    # serviceaccount controller makes it.
    _eventually(
        lambda: core.list_namespaced_service_account(kube_namespace).items,
        "default service account",
    )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="p"),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="c", image="registry.invalid/agent:1")]
        ),
    )
    created = core.create_namespaced_pod(kube_namespace, pod)
    assert created.spec is not None and created.status is not None
    assert created.spec.service_account_name == "default"
    assert created.status.phase == "Pending"


def test_namespaces_are_deleted(kube: ControlPlane) -> None:
    core = client.CoreV1Api(kube.api_client())
    name = "t-deleted"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(
        name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x"), data={"a": "b"})
    )
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as e:
            return e.status == 404
        return False

    _eventually(gone, "namespace deletion (namespace controller)")


def test_deployments_become_pods(kube_workloads: ControlPlane, kube_namespace: str) -> None:
    kube_workloads.kubectl(
        "create",
        "deployment",
        "agent",
        "-n",
        kube_namespace,
        "--image=registry.invalid/agent:1",
        "--replicas=2",
        check=True,
    )
    core = client.CoreV1Api(kube_workloads.api_client())

    def pods() -> list[str]:
        names = [
            str(p.metadata.name)
            for p in core.list_namespaced_pod(kube_namespace).items
            if p.metadata is not None
        ]
        return names if len(names) >= 2 else []

    names = _eventually(pods, "pods of the deployment")
    assert len(names) == 2 and all(n.startswith("agent-") for n in names)


# --------------------------------------------------------------------------- webhooks


class _Deny(BaseHTTPRequestHandler):
    """A stand-in admission webhook: refuses ConfigMaps labelled deny=yes."""

    seen: list[str] = []

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = review["request"]
        labels = request["object"]["metadata"].get("labels") or {}
        allowed = labels.get("deny") != "yes"
        self.seen.append(request["object"]["metadata"]["name"])
        body = json.dumps(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": request["uid"],
                    "allowed": allowed,
                    "status": {"message": "refused by the stand-in"},
                },
            }
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_server() -> Iterator[tuple[int, bytes]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Deny)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], ca.cert_pem.bytes()
    finally:
        server.shutdown()
        server.server_close()


def test_apiserver_calls_a_webhook_on_loopback_over_https(
    kube: ControlPlane, kube_namespace: str, webhook_server: tuple[int, bytes]
) -> None:
    port, ca_pem = webhook_server
    name = f"testbed-deny-{kube_namespace}"
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "deny.testbed.haltgate.dev",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}/validate",
                    "caBundle": base64.b64encode(ca_pem).decode(),
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["configmaps"],
                    }
                ],
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": kube_namespace}
                },
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }
        ],
    }
    kube.kubectl("apply", "-f", "-", input=json.dumps(config), check=True)
    try:
        # Webhook configurations reach the admission chain asynchronously: retry briefly.
        denied = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "data": {"a": "b"},
            "metadata": {"name": "denied", "namespace": kube_namespace, "labels": {"deny": "yes"}},
        }

        def refused() -> subprocess.CompletedProcess[str] | None:
            # Server-side dry run: goes through admission, stores nothing.
            out = kube.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(denied))
            return out if out.returncode != 0 else None

        out = _eventually(refused, "webhook refusal")
        assert "refused by the stand-in" in out.stderr
        allowed = kube.kubectl(
            "create", "configmap", "fine", "-n", kube_namespace, "--from-literal=a=b"
        )
        assert allowed.returncode == 0, allowed.stderr
        assert "fine" in _Deny.seen
    finally:
        kube.kubectl("delete", "validatingwebhookconfiguration", name, "--wait=false")


# --------------------------------------------------------------------------- make cluster-up


@pytest.mark.k8s
def test_cluster_up_status_down(tmp_path: Path) -> None:
    env = {**os.environ, "HALTGATE_CLUSTER_DIR": str(tmp_path / "cluster")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "haltgate.testbed", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )

    up = cli("up")
    try:
        assert up.returncode == 0, up.stderr
        kubeconfig = tmp_path / "cluster" / "kubeconfig"
        assert f"export KUBECONFIG={kubeconfig}" in up.stdout
        assert "governancepolicies.haltgate.dev" in up.stdout
        status = cli("status")
        assert status.returncode == 0 and "/readyz: ok" in status.stdout
        again = cli("up")
        assert again.returncode == 0 and "already running" in again.stdout
    finally:
        down = cli("down")
    assert down.returncode == 0 and "kube-apiserver" in down.stdout, down.stdout + down.stderr
    after = cli("status")
    assert after.returncode == 1 and "not running" in after.stdout


def test_make_cluster_up_runs_the_workload_controllers() -> None:
    """`make cluster-up` is where people try Deployments: their pods must appear."""
    res = subprocess.run(
        ["make", "-n", "cluster-up"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "-m haltgate.testbed up --workloads" in res.stdout, res.stdout
