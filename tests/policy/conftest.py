"""Fixtures of the policy tests: a real OPA server per test, started from the Go-built binary."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from haltgate.testbed.process import ManagedProcess, free_port, port_open, wait_until


@dataclass
class OPAServer:
    """A running ``opa run --server`` on loopback."""

    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def freeze(self) -> None:
        """SIGSTOP: the socket still accepts connections, nothing answers (a hung OPA).

        Returns once every thread is stopped: the signal is delivered asynchronously, and a
        thread still running could answer one more request."""
        os.kill(self.process.pid, signal.SIGSTOP)
        tasks = Path(f"/proc/{self.process.pid}/task")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            states = []
            for task in tasks.iterdir():
                try:
                    # Field 3 of stat, after the parenthesised command name.
                    states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
                except (OSError, IndexError):
                    continue
            if states and all(st in ("T", "t") for st in states):
                return
            time.sleep(0.005)
        raise RuntimeError("opa did not stop within 5 s of SIGSTOP")

    def thaw(self) -> None:
        if self.process.alive():
            os.kill(self.process.pid, signal.SIGCONT)


def start_opa(binary: Path, log: Path, port: int | None = None) -> OPAServer:
    """Start OPA on ``port`` (a free one if ``None``) and wait at most 10 s until it listens."""
    attempts = 3 if port is None else 1  # a free port may be taken before OPA binds it
    for _ in range(attempts):
        bound = port if port is not None else free_port()
        proc = ManagedProcess(
            "opa",
            [
                str(binary),
                "run",
                "--server",
                "--addr",
                f"127.0.0.1:{bound}",
                "--log-level",
                "error",
            ],
            log,
        ).start()
        try:
            wait_until(
                lambda p=bound: port_open("127.0.0.1", p),
                timeout=10,  # type: ignore[misc]
                what="opa",
                log=log,
                alive=proc.alive,
                interval=0.02,
            )
        except Exception:
            proc.stop()
            continue
        return OPAServer(proc, bound)
    raise RuntimeError(f"opa did not start; see {log}")


@pytest.fixture
def opa_server(opa_binary: Path, tmp_path: Path) -> Iterator[OPAServer]:
    """A fresh OPA server for one test (it starts in about 50 ms)."""
    server = start_opa(opa_binary, tmp_path / "opa.log")
    try:
        yield server
    finally:
        server.thaw()  # a stopped process does not act on SIGTERM
        server.process.stop(timeout=5)
