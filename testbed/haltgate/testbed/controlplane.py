"""A real Kubernetes control plane on loopback: etcd + kube-apiserver (+ controller-manager).

Envtest-style: no kubelet, no nodes, so pods stay Pending, but every API, admission webhook,
CRD schema and RBAC rule is the real one. Ports are picked at random, so several control
planes (a test session and a ``make cluster-up`` one) can run side by side.

    plane = ControlPlane(Path("/tmp/kube")).start()
    plane.kubectl("get", "ns")
    client = plane.api_client()          # kubernetes.client.ApiClient
    plane.stop()

The kubeconfig (``plane.kubeconfig``) embeds the CA and an admin client certificate in
``system:masters``; kopf, the ``kubernetes`` client and kubectl all take it as is.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from haltgate.testbed import binaries, certs
from haltgate.testbed.errors import TestbedError
from haltgate.testbed.process import ManagedProcess, free_port, free_ports, stop_pid, wait_until

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # first address of SERVICE_CIDR: the `kubernetes` Service
CONTEXT = "haltgate-testbed"

BASE_CONTROLLERS: tuple[str, ...] = (
    # Without these a bare apiserver differs from a cluster in ways tests trip over:
    # pod creation fails (ServiceAccount admission wants the `default` account) and deleted
    # namespaces stay Terminating forever.
    "serviceaccount-controller",
    "namespace-controller",
    "root-ca-certificate-publisher-controller",
)
WORKLOAD_CONTROLLERS: tuple[str, ...] = (
    *BASE_CONTROLLERS,
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "garbage-collector-controller",
)

# Seconds between SIGTERM and SIGKILL. The apiserver's graceful shutdown waits for open
# watches (kopf, kubectl -w) to end, and nothing here needs a graceful end: every start
# begins with an empty etcd.
STOP_GRACE = 3.0

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def _server_env() -> dict[str, str]:
    # The apiserver calls admission webhooks on 127.0.0.1; an inherited proxy setting must
    # not route those calls (or etcd's) anywhere else.
    return {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}


@dataclass
class _Ports:
    etcd_client: int = 0
    etcd_peer: int = 0
    apiserver: int = 0
    controller_manager: int = 0


@dataclass
class ControlPlane:
    """etcd + kube-apiserver (+ optionally kube-controller-manager) under ``state_dir``."""

    state_dir: Path
    controllers: Sequence[str] | None = BASE_CONTROLLERS
    """Controllers of kube-controller-manager to run; None runs no controller-manager."""
    detached: bool = False
    """Servers outlive this Python process (``make cluster-up``) instead of dying with it."""
    start_timeout: float = 180.0
    """Seconds to wait for each server to become ready (2 shared cores: be generous)."""
    ports: _Ports = field(default_factory=_Ports)
    _procs: dict[str, ManagedProcess] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ paths

    @property
    def server(self) -> str:
        """The apiserver URL, e.g. ``https://127.0.0.1:37019``."""
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def ca_path(self) -> Path:
        """PEM of the CA that signed the apiserver certificate."""
        return self.pki_dir / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (certificates embedded)."""
        return self.state_dir / "kubeconfig"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def log(self, name: str) -> Path:
        """Log file of one server: etcd, kube-apiserver or kube-controller-manager."""
        return self.log_dir / f"{name}.log"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ControlPlane:
        """Generate certificates, start every server and wait until each is ready."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        pki = certs.generate(self.pki_dir, service_ip=SERVICE_IP)
        try:
            self._start_etcd()
            self._start_apiserver(pki)
            self._write_kubeconfig(pki.admin, self.kubeconfig, "haltgate-admin")
            self._write_kubeconfig(
                pki.controller_manager,
                self.state_dir / "cm.kubeconfig",
                "system:kube-controller-manager",
            )
            if self.controllers is not None:
                self.start_controller_manager(self.controllers)
        except BaseException:
            self.stop()
            raise
        self._save_state()
        return self

    def stop(self) -> None:
        """Stop the servers, the newest first. Idempotent."""
        for name in reversed(list(self._procs)):
            self._procs[name].stop(timeout=STOP_GRACE)
        self._procs.clear()
        if self.state_file.exists():
            self.state_file.unlink()

    def start_controller_manager(self, controllers: Sequence[str] = WORKLOAD_CONTROLLERS) -> None:
        """(Re)start kube-controller-manager with ``controllers`` (e.g. to turn Deployments
        into Pods). A running one with the same set is left alone."""
        current = self._procs.get("kube-controller-manager")
        if (
            current is not None
            and current.alive()
            and list(self.controllers or ()) == list(controllers)
        ):
            return
        if current is not None:
            current.stop(timeout=STOP_GRACE)
            del self._procs["kube-controller-manager"]
        self.controllers = tuple(controllers)
        self.ports.controller_manager = self._port_not_in_use()
        pki = self.pki_dir
        cm_kubeconfig = str(self.state_dir / "cm.kubeconfig")
        proc = self._spawn(
            "kube-controller-manager",
            [
                str(binaries.require("kube-controller-manager")),
                f"--kubeconfig={cm_kubeconfig}",
                f"--authentication-kubeconfig={cm_kubeconfig}",
                f"--authorization-kubeconfig={cm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports.controller_manager}",
                f"--cert-dir={self.state_dir / 'cm-certs'}",
                "--leader-elect=false",
                f"--controllers={','.join(controllers)}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Each controller acts as its own service account with its bootstrap role, as in
                # a real cluster (the controller-manager's own role is minimal).
                "--use-service-account-credentials=true",
            ],
        )
        wait_until(
            lambda: self._https_ok(self.ports.controller_manager, "/healthz", verify=False),
            timeout=self.start_timeout,
            what="kube-controller-manager",
            log=proc.log,
            alive=proc.alive,
            interval=0.25,
        )
        self._save_state()

    # ------------------------------------------------------------------ clients

    def api_client(self) -> ApiClient:
        """A new ``kubernetes`` ApiClient authenticated as the admin."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig), context=CONTEXT)

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane; output is text."""
        argv = [str(binaries.kubectl()), f"--kubeconfig={self.kubeconfig}", *args]
        try:
            return subprocess.run(
                argv,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=check,
                env=_server_env(),
            )
        except subprocess.TimeoutExpired as e:
            raise TestbedError(
                f"kubectl {' '.join(args)}: no answer within {timeout:.0f}s",
                self.log("kube-apiserver"),
            ) from e

    def env(self) -> dict[str, str]:
        """Environment for a subprocess that should talk to this control plane (kopf,
        ``haltgate operator``, kubectl, helm): ours plus ``KUBECONFIG``, minus proxies."""
        return {**_server_env(), "KUBECONFIG": str(self.kubeconfig)}

    def ready(self) -> bool:
        """Whether the apiserver answers /readyz with 200."""
        return self._https_ok(self.ports.apiserver, "/readyz", verify=True)

    # ------------------------------------------------------------------ detached mode

    def _save_state(self) -> None:
        state = {
            "ports": asdict(self.ports),
            "controllers": list(self.controllers) if self.controllers is not None else None,
            "pids": {name: p.pid for name, p in self._procs.items()},
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
        }
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> tuple[ControlPlane, dict[str, int]] | None:
        """A control plane started detached earlier, and its process ids; None if none."""
        try:
            state = json.loads((state_dir / "state.json").read_text())
        except FileNotFoundError:
            return None
        plane = cls(
            state_dir,
            controllers=state["controllers"],
            detached=True,
            ports=_Ports(**state["ports"]),
        )
        return plane, {k: int(v) for k, v in state["pids"].items()}

    @staticmethod
    def stop_detached(state_dir: Path) -> list[str]:
        """Stop a control plane started by another process; returns what was stopped."""
        loaded = ControlPlane.load(state_dir)
        if loaded is None:
            return []
        plane, pids = loaded
        stopped = [name for name, pid in reversed(list(pids.items())) if stop_pid(pid, STOP_GRACE)]
        plane.state_file.unlink(missing_ok=True)
        return stopped

    # ------------------------------------------------------------------ internals

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        proc = ManagedProcess(
            name,
            argv,
            self.log(name),
            env=_server_env(),
            cwd=self.state_dir,
            die_with_parent=not self.detached,
        ).start()
        self._procs[name] = proc
        return proc

    def _start_etcd(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            self.ports.etcd_client, self.ports.etcd_peer = free_ports(2)
            client = f"http://127.0.0.1:{self.ports.etcd_client}"
            peer = f"http://127.0.0.1:{self.ports.etcd_peer}"
            proc = self._spawn(
                "etcd",
                [
                    str(binaries.require("etcd")),
                    "--name=testbed",
                    f"--data-dir={self.state_dir / 'etcd'}",
                    f"--listen-client-urls={client}",
                    f"--advertise-client-urls={client}",
                    f"--listen-peer-urls={peer}",
                    f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster=testbed={peer}",
                    "--initial-cluster-state=new",
                    # Test data is disposable; fsync per write would dominate on a shared disk.
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                ],
            )
            try:
                wait_until(
                    lambda: self._etcd_healthy(),
                    timeout=self.start_timeout,
                    what="etcd",
                    log=proc.log,
                    alive=proc.alive,
                )
                return
            except TestbedError:
                proc.stop()
                del self._procs["etcd"]
                if attempt == attempts - 1 or "address already in use" not in proc.log.read_text(
                    errors="replace"
                ):
                    raise

    def _port_not_in_use(self) -> int:
        taken = {p for p in asdict(self.ports).values() if p}
        for _ in range(20):
            if (port := free_port()) not in taken:
                return port
        raise TestbedError("no free port found")

    def _etcd_healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.ports.etcd_client}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(json.load(r).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _start_apiserver(self, pki: certs.ControlPlaneCerts, attempts: int = 3) -> None:
        for attempt in range(attempts):
            self.ports.apiserver = self._port_not_in_use()
            proc = self._spawn(
                "kube-apiserver",
                [
                    str(binaries.require("kube-apiserver")),
                    f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={self.ports.apiserver}",
                    f"--tls-cert-file={pki.apiserver.cert_path}",
                    f"--tls-private-key-file={pki.apiserver.key_path}",
                    f"--client-ca-file={pki.ca.cert_path}",
                    "--authorization-mode=Node,RBAC",
                    "--anonymous-auth=false",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={pki.service_account_pub}",
                    f"--service-account-signing-key-file={pki.service_account_key}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    f"--requestheader-client-ca-file={pki.ca.cert_path}",
                    "--requestheader-allowed-names=front-proxy-client",
                    "--requestheader-username-headers=X-Remote-User",
                    "--requestheader-group-headers=X-Remote-Group",
                    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                    f"--proxy-client-cert-file={pki.front_proxy_client.cert_path}",
                    f"--proxy-client-key-file={pki.front_proxy_client.key_path}",
                    # The `kubernetes` Service cannot point at a loopback address; with no
                    # pods to reach it from, leave its endpoints alone instead of failing.
                    "--endpoint-reconciler-type=none",
                    "--allow-privileged=true",
                    "--profiling=false",
                    f"--cert-dir={self.state_dir / 'apiserver-certs'}",
                ],
            )
            try:
                wait_until(
                    self.ready,
                    timeout=self.start_timeout,
                    what="kube-apiserver",
                    log=proc.log,
                    alive=proc.alive,
                    interval=0.25,
                )
                return
            except TestbedError:
                proc.stop()
                del self._procs["kube-apiserver"]
                if attempt == attempts - 1 or "address already in use" not in proc.log.read_text(
                    errors="replace"
                ):
                    raise

    def _ssl_context(self, verify: bool) -> ssl.SSLContext:
        if not verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cafile=str(self.ca_path))
        ctx.load_cert_chain(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        return ctx

    def _https_ok(self, port: int, path: str, *, verify: bool) -> bool:
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}{path}", timeout=3, context=self._ssl_context(verify)
            ) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _write_kubeconfig(self, pair: certs.KeyPair, path: Path, user: str) -> None:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        doc: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": CONTEXT,
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(self.ca_path.read_bytes()),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": b64(pair.cert_pem),
                        "client-key-data": b64(pair.key_pem),
                    },
                }
            ],
            "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": user}}],
            "current-context": CONTEXT,
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        path.chmod(0o600)


def install_crds(plane: ControlPlane, directory: Path, timeout: float = 60.0) -> list[str]:
    """``kubectl apply`` every CRD in ``directory``; wait until each is Established.

    Server-side apply, so that several appliers (tests, the demo, the operator) do not
    fight over the last-applied annotation. Returns the CRD names."""
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise TestbedError(f"no CRD files in {directory}")
    names = []
    for path in files:
        doc = yaml.safe_load(path.read_text())
        names.append(f"customresourcedefinition/{doc['metadata']['name']}")
    applied = plane.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=haltgate-testbed",
        *(f"--filename={f}" for f in files),
        timeout=timeout,
    )
    if applied.returncode != 0:
        raise TestbedError(
            f"applying CRDs failed: {applied.stderr.strip()}", plane.log("kube-apiserver")
        )
    waited = plane.kubectl(
        "wait",
        "--for=condition=Established",
        f"--timeout={timeout:.0f}s",
        *names,
        timeout=timeout + 10,
    )
    if waited.returncode != 0:
        raise TestbedError(
            f"CRDs not Established: {waited.stderr.strip()}", plane.log("kube-apiserver")
        )
    return [n.split("/", 1)[1] for n in names]


def wait_for(plane: ControlPlane, what: str, check: Any, timeout: float = 60.0) -> None:
    """Poll ``check()`` (truthy when done) with the apiserver log in the timeout error."""
    wait_until(
        lambda: bool(check()),
        timeout=timeout,
        what=what,
        log=plane.log("kube-apiserver"),
        interval=0.2,
    )


def elapsed(start: float) -> str:
    return f"{time.monotonic() - start:.1f}s"
