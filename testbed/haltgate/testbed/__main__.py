"""Run the test control plane for people: ``python -m haltgate.testbed up|down|status``.

``up`` starts etcd + kube-apiserver + kube-controller-manager detached (they keep running
after the command returns), applies ``crds/``, and prints the kubeconfig to use. ``down``
stops them. The state lives in ``$HALTGATE_CLUSTER_DIR`` (default
``~/.cache/haltgate/cluster``); each ``up`` starts from an empty etcd.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from haltgate.testbed.controlplane import (
    BASE_CONTROLLERS,
    WORKLOAD_CONTROLLERS,
    ControlPlane,
    install_crds,
)
from haltgate.testbed.errors import TestbedError

REPO = Path(__file__).resolve().parents[3]


def state_dir() -> Path:
    if override := os.environ.get("HALTGATE_CLUSTER_DIR"):
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "haltgate" / "cluster"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(directory: Path) -> tuple[ControlPlane, dict[str, int]] | None:
    loaded = ControlPlane.load(directory)
    if loaded is None:
        return None
    plane, pids = loaded
    return (plane, pids) if pids and all(_alive(p) for p in pids.values()) else None


def _print_access(plane: ControlPlane) -> None:
    print(f"server:     {plane.server}")
    print(f"kubeconfig: {plane.kubeconfig}")
    print(f"logs:       {plane.log_dir}")
    print()
    print(f"export KUBECONFIG={plane.kubeconfig}")


def up(args: argparse.Namespace) -> int:
    directory = state_dir()
    if (running := _running(directory)) is not None:
        print("the control plane is already running (make cluster-down to stop it)")
        _print_access(running[0])
        return 0
    ControlPlane.stop_detached(directory)  # leftovers of a half-dead earlier run
    shutil.rmtree(directory, ignore_errors=True)
    controllers = WORKLOAD_CONTROLLERS if args.workloads else BASE_CONTROLLERS
    started = time.monotonic()
    plane = ControlPlane(directory, controllers=controllers, detached=True).start()
    print(
        f"etcd, kube-apiserver and kube-controller-manager up in {time.monotonic() - started:.1f}s"
    )
    if not args.no_crds:
        names = install_crds(plane, REPO / "crds")
        print(f"CRDs applied and Established: {', '.join(names)}")
    _print_access(plane)
    return 0


def down(args: argparse.Namespace) -> int:
    stopped = ControlPlane.stop_detached(state_dir())
    print(f"stopped: {', '.join(stopped)}" if stopped else "no control plane was running")
    return 0


def status(args: argparse.Namespace) -> int:
    running = _running(state_dir())
    if running is None:
        print("not running (make cluster-up to start it)")
        return 1
    plane, pids = running
    ready = plane.ready()
    for name, pid in pids.items():
        print(f"{name:<24} pid {pid}")
    print(f"apiserver /readyz: {'ok' if ready else 'NOT READY'}")
    _print_access(plane)
    return 0 if ready else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m haltgate.testbed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start the control plane detached")
    p_up.add_argument(
        "--workloads",
        action="store_true",
        help="also run the Deployment/ReplicaSet/... controllers",
    )
    p_up.add_argument("--no-crds", action="store_true", help="do not apply crds/")
    p_up.set_defaults(func=up)
    sub.add_parser("down", help="stop it").set_defaults(func=down)
    sub.add_parser("status", help="show whether it runs").set_defaults(func=status)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except TestbedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
