"""Child processes with log files, free ports and bounded waits."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from haltgate.testbed.errors import TestbedError

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before fork: the child only calls it


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: one system call, nothing else.
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it; callers retry on races)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports (all held open while picking, so none repeats)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((host, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    log: Path | None = None,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.1,
) -> None:
    """Poll ``ready`` until it returns true, for at most ``timeout`` seconds.

    ``alive`` lets the wait stop at once when the process it waits for has died, instead of
    running out the clock. Raises :class:`TestbedError` (with the log tail) on either.
    """
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        if alive is not None and not alive():
            raise TestbedError(f"{what}: the process exited before it was ready", log)
        if time.monotonic() >= deadline:
            raise TestbedError(f"{what}: not ready after {timeout:.0f}s", log)
        time.sleep(interval)


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class ManagedProcess:
    """A server started in its own session, stdout and stderr appended to ``log``."""

    name: str
    argv: Sequence[str]
    log: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    die_with_parent: bool = True
    """Ask the kernel to SIGTERM the process when we die (no orphans after a killed pytest).
    False for servers meant to outlive the command that started them (cluster-up)."""
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> ManagedProcess:
        """Start the process. Its own session keeps it alive when started detached."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"$ {' '.join(self.argv)}\n".encode())
            out.flush()
            try:
                self.popen = subprocess.Popen(
                    list(self.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=dict(self.env) if self.env is not None else None,
                    cwd=self.cwd,
                    start_new_session=True,
                    preexec_fn=_die_with_parent if self.die_with_parent else None,
                )
            except OSError as e:
                raise TestbedError(f"{self.name}: cannot start {self.argv[0]}: {e}") from e
        return self

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise TestbedError(f"{self.name}: not started")
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Safe to call twice."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def stop_pid(pid: int, timeout: float = 10.0) -> bool:
    """Stop a process we started earlier (e.g. from a state file) by its id.

    Returns whether it was running. Used by ``python -m haltgate.testbed down``, where the
    processes are not our children any more, so we poll for their exit.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True
