"""hack/deps.sh (`make deps`): what it says and its exit code when it cannot install.

Run as another user than root (setpriv, when the tests run as root) with a `dpkg-query`
that reports every package missing: the script must name them, say what they are for and
the command to run, and exit 0, or 1 under DEPS_STRICT=1 (`.ci/run`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNPRIVILEGED_UID = 1000
COMMAND_TIMEOUT = 60


@pytest.fixture
def fake_bin() -> Iterator[Path]:
    """A `dpkg-query` that finds nothing, where the unprivileged user can run it."""
    path = Path(tempfile.mkdtemp(prefix="haltgate-deps-"))
    try:
        path.chmod(0o755)
        (path / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")
        (path / "dpkg-query").chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _run(fake: Path, strict: bool, cwd: Path = Path("/")) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{fake}:/usr/sbin:/usr/bin:/sbin:/bin", "DEPS_STRICT": "1" if strict else "0"}
    argv = ["bash", str(REPO / "hack" / "deps.sh")]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.fail("setpriv (util-linux) is missing: `make deps` installs it")
        argv = [
            "setpriv",
            f"--reuid={UNPRIVILEGED_UID}",
            f"--regid={UNPRIVILEGED_UID}",
            "--clear-groups",
            *argv,
        ]
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=COMMAND_TIMEOUT, check=False
    )


def test_missing_packages_are_named_with_the_command_to_run(fake_bin: Path) -> None:
    res = _run(fake_bin, strict=False)
    assert res.returncode == 0, res.stderr
    assert "missing system packages: make iptables iproute2" in res.stderr
    assert "not root" in res.stderr
    assert (
        "sudo apt-get install -y make iptables iproute2 procps psmisc util-linux prometheus"
        in res.stderr
    )
    assert "explicit-mode journey only" in res.stderr  # what it costs


def test_strict_mode_fails(fake_bin: Path) -> None:
    res = _run(fake_bin, strict=True)
    assert res.returncode == 1
    assert "missing system packages" in res.stderr


def test_a_closed_checkout_is_opened_through_sudo_as_ci_does(fake_bin: Path) -> None:
    """Not root but allowed sudo (the README's line run by a user): the directories that keep
    the sidecar's UID from the checkout get o+x through sudo, as `.ci/run` (deps.sh run
    wholly as root) does, not just a message."""
    log = fake_bin / "sudo.log"
    # A sudo that allows everything without a password and runs the command as the caller
    # (the caller owns the closed directory, so its chmod works without root).
    (fake_bin / "sudo").write_text(
        f'#!/bin/sh\n[ "$1" = -n ] && shift\necho "$@" >> {log}\n'
        '[ "$1" = env ] && exit 0\n'  # the apt-get run (logged, not run)
        'exec "$@"\n'
    )
    (fake_bin / "sudo").chmod(0o755)
    log.touch()
    closed = fake_bin / "checkout"
    closed.mkdir(mode=0o700)
    (closed / "Makefile").write_text("")
    if os.geteuid() == 0:
        os.chown(fake_bin, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        os.chown(log, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        os.chown(closed, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
    res = _run(fake_bin, strict=False, cwd=closed)
    assert res.returncode == 0, res.stderr
    assert f"chmod o+x {closed}" in log.read_text(), (log.read_text(), res.stdout, res.stderr)
    assert closed.stat().st_mode & 0o001, oct(closed.stat().st_mode)
