"""``haltgate sidecar`` as a real child process, as the pod runs it: the argv, the pod's
identity in the environment, and waiting until it is ready (shared by the sidecar and
audit tests that read the spool such a process writes)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from haltgate.testbed.cli_processes import explicit_sidecar_argv
from haltgate.testbed.process import free_port

__all__ = [
    "POD_ENV",
    "REPO",
    "explicit_sidecar",
    "free_port",
    "haltgate",
    "pod_env",
    "sidecar_ports",
    "spawn_pod_sidecar",
    "start_restartable_sidecar",
    "wait_ready",
]

REPO = Path(__file__).resolve().parents[2]

POD_ENV = {"HALTGATE_POD_NAME": "agent-7d4b9c6f5-x2kqp", "HALTGATE_POD_NAMESPACE": "agents"}
"""The downward-API variables of a pod ``agent-7d4b9c6f5-x2kqp`` in namespace ``agents``
(workload ``agent``)."""


def haltgate(*args: str) -> list[str]:
    """argv of the ``haltgate`` CLI with this interpreter."""
    return [sys.executable, "-c", "from haltgate.cli.main import main; main()", *args]


def sidecar_ports() -> dict[str, int]:
    """Free loopback ports for the ``explicit``, ``admin`` and ``metrics`` listeners."""
    return {name: free_port() for name in ("explicit", "admin", "metrics")}


def explicit_sidecar(
    policy: Path, ports: dict[str, int], *options: str, log_level: str = "error"
) -> list[str]:
    """argv of ``haltgate sidecar`` in explicit mode on ``ports`` (see :func:`sidecar_ports`),
    then ``options`` (``--state-dir``, ``--audit-dir``, ...)."""
    return explicit_sidecar_argv(
        policy,
        ports["explicit"],
        *options,
        admin_port=ports["admin"],
        metrics_port=ports["metrics"],
        log_level=log_level,
    )


def pod_env() -> dict[str, str]:
    """This process's environment plus :data:`POD_ENV`."""
    return {**os.environ, **POD_ENV}


async def spawn_pod_sidecar(
    policy: Path,
    state: Path,
    *,
    log_level: str = "error",
    stdout: Any = asyncio.subprocess.DEVNULL,
    stderr: Any = asyncio.subprocess.DEVNULL,
) -> tuple[asyncio.subprocess.Process, dict[str, int]]:
    """``haltgate sidecar`` as the pod runs it (:data:`POD_ENV`), explicit mode, its state
    and audit spool in ``state``; started, not yet ready (see :func:`wait_ready`). Returns
    the process and its ports (:func:`sidecar_ports`)."""
    ports = sidecar_ports()
    proc = await asyncio.create_subprocess_exec(
        *explicit_sidecar(policy, ports, "--state-dir", str(state), log_level=log_level),
        cwd=REPO,
        env=pod_env(),
        stdout=stdout,
        stderr=stderr,
    )
    return proc, ports


async def wait_ready(url: str, proc: asyncio.subprocess.Process) -> None:
    """Poll ``url`` until it answers 200 (bounded: 20 s); fail if the process exits."""
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            assert proc.returncode is None, "sidecar exited"
            try:
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=0.5)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("sidecar not ready in 20 s")


async def start_restartable_sidecar(
    policy: Path, ports: dict[str, int], workdir: Path, token: Path
) -> asyncio.subprocess.Process:
    """``haltgate sidecar`` in explicit mode on ``ports`` with its state, spool and admin
    token under ``workdir`` (the same paths at every call, so a restart after SIGKILL finds
    what the killed process left); returns once ``/readyz`` answers."""
    proc = await asyncio.create_subprocess_exec(
        *explicit_sidecar(
            policy,
            ports,
            "--state-dir",
            str(workdir / "st"),
            "--audit-dir",
            str(workdir / "spool"),
            "--admin-token-file",
            str(token),
        ),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await wait_ready(f"http://127.0.0.1:{ports['admin']}/readyz", proc)
    return proc
