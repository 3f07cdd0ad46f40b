"""Real ``haltgate`` and stand-in processes on loopback ports, as the tests and benchmarks
start them: a stand-in upstream as a child process, and the argv of a ``haltgate sidecar``
that is one named member of a workload (explicit mode, audit kept in memory)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from haltgate.testbed.process import ManagedProcess, free_port, port_open, wait_until

__all__ = [
    "HALTGATE",
    "explicit_sidecar_argv",
    "member_sidecar_argv",
    "standin_process",
]

HALTGATE = str(Path(sys.executable).parent / "haltgate")
"""The ``haltgate`` console script of this interpreter's environment."""

_STANDINS = ("llm", "mcp", "http_api")


@contextmanager
def standin_process(kind: str, log: Path, cwd: Path | None = None) -> Iterator[str]:
    """Stand-in ``kind`` (``llm``, ``mcp`` or ``http_api``) as a child process on a free
    loopback port, its output in ``log``; yields its base URL, stops it on exit."""
    if kind not in _STANDINS:
        raise ValueError(f"kind: unknown stand-in {kind!r} (one of {', '.join(_STANDINS)})")
    port = free_port()
    proc = ManagedProcess(
        f"standin-{kind}",
        [
            sys.executable,
            "-m",
            f"haltgate.testbed.standins.{kind}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        log,
        cwd=cwd,
    ).start()
    try:
        wait_until(
            lambda: port_open("127.0.0.1", port),
            timeout=20,
            what=f"stand-in {kind}",
            log=log,
            alive=proc.alive,
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def explicit_sidecar_argv(
    policy: Path,
    port: int,
    *options: str,
    admin_port: int = 0,
    metrics_port: int = 0,
    log_level: str = "error",
) -> list[str]:
    """argv of ``haltgate sidecar`` run by this interpreter, in explicit mode on ``port``,
    admin and metrics on the given loopback ports (0: any free one), then ``options``."""
    return [
        sys.executable,
        "-c",
        "from haltgate.cli.main import main; main()",
        "sidecar",
        "--policy",
        str(policy),
        "--mode",
        "explicit",
        "--listen",
        f"127.0.0.1:{port}",
        "--admin-listen",
        f"127.0.0.1:{admin_port}",
        "--metrics-listen",
        f"127.0.0.1:{metrics_port}",
        "--log-level",
        log_level,
        *options,
    ]


def member_sidecar_argv(
    policy: Path,
    port: int,
    *,
    namespace: str,
    workload: str,
    pod: str | None = None,
    pool_dsn: str | None = None,
    metrics_port: int | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """argv of ``haltgate sidecar`` for pod ``pod`` of ``workload`` in ``namespace``:
    explicit mode on ``port``, audit in memory, admin (and metrics, unless given) on free
    loopback ports, the pool database ``pool_dsn`` when given, then ``extra``."""
    return [
        HALTGATE,
        "sidecar",
        "--policy",
        str(policy),
        "--mode",
        "explicit",
        "--audit-sink",
        "memory",
        "--listen",
        f"127.0.0.1:{port}",
        "--admin-listen",
        f"127.0.0.1:{free_port()}",
        "--metrics-listen",
        f"127.0.0.1:{metrics_port or free_port()}",
        "--agent-namespace",
        namespace,
        "--agent-workload",
        workload,
        *(("--agent-pod", pod) if pod else ()),
        *(("--pool-dsn", pool_dsn) if pool_dsn else ()),
        *extra,
    ]
