"""Idle-connection flood: the sidecar keeps answering its probes, then sheds the idle ones.

Run: ``.venv/bin/python bench/connection_flood.py [--connections 6000] [--idle-timeout 5]``

The sidecar (``haltgate sidecar``, explicit mode, memory audit) runs as a subprocess with
the file limit this shell has; this process opens ``--connections`` TCP connections to the
explicit port that send nothing (or one header line, ``--slowloris``) and keeps them. Printed:
how many the sidecar accepted and how many it refused at once with 503
``too_many_connections``, its open file descriptors, whether ``/readyz`` and a governed
call still answer during the flood, and how many held connections it closed after the
idle timeout (the header timeout). Before the bounds, 21,000 idle connections exhausted
the file limit and ``/readyz`` stopped answering.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sidecar_overhead import free_port, policy, wait_port

from haltgate.testbed.cli_processes import explicit_sidecar_argv

REPO = Path(__file__).resolve().parents[1]


async def flood(port: int, admin: int, n: int, slowloris: bool, idle: float) -> None:
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    failed = 0
    for _ in range(n):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            failed += 1
            continue
        if slowloris:
            writer.write(b"GET /llm/v1/models HTTP/1.1\r\n")
        held.append((reader, writer))
    await asyncio.sleep(0.5)
    states = [_state(reader) for reader, _ in held]
    print(
        f"opened {len(held)} connections ({failed} could not open): "
        f"{states.count('refused')} refused at once with 503 too_many_connections, "
        f"{states.count('open')} held open by the sidecar, {states.count('closed')} closed"
    )
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        started = time.perf_counter()
        async with s.get(f"http://127.0.0.1:{admin}/readyz") as r:
            print(
                f"/readyz during the flood: {r.status} in "
                f"{(time.perf_counter() - started) * 1000:.1f} ms"
            )
    await asyncio.sleep(idle + 2)
    states = [_state(reader) for reader, _ in held]
    print(
        f"{idle + 2:g} s later: {states.count('open')} still open "
        f"(the header timeout closed the rest)"
    )
    for _, writer in held:
        writer.close()


def _state(reader: asyncio.StreamReader) -> str:
    buffered = bytes(reader._buffer)  # type: ignore[attr-defined]
    if buffered.startswith(b"HTTP/1.1 503"):
        return "refused"
    if reader._eof:  # type: ignore[attr-defined]
        return "closed"
    return "open"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=6000)
    ap.add_argument("--max-connections", type=int, default=2048)
    ap.add_argument("--idle-timeout", type=float, default=30.0)
    ap.add_argument("--slowloris", action="store_true", help="send one header line each")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, args.connections * 2 + 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p),
    }
    port, admin, up = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="hg-flood-") as tmp:
        policy_path = Path(tmp) / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(policy(f"http://127.0.0.1:{up}")))
        cmd = explicit_sidecar_argv(
            policy_path,
            port,
            "--audit-sink",
            "memory",
            "--max-connections",
            str(args.max_connections),
            "--idle-timeout",
            str(args.idle_timeout),
            admin_port=admin,
        )
        sidecar = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_port(port, sidecar, "sidecar")
            print(
                f"file limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}, "
                f"--max-connections {args.max_connections}, --idle-timeout "
                f"{args.idle_timeout:g} s, {'slowloris' if args.slowloris else 'silent'}"
            )
            asyncio.run(flood(port, admin, args.connections, args.slowloris, args.idle_timeout))
            fds = len(os.listdir(f"/proc/{sidecar.pid}/fd"))
            print(
                f"sidecar open file descriptors at the end: {fds}; alive: {sidecar.poll() is None}"
            )
        finally:
            sidecar.terminate()
            try:
                sidecar.wait(10)
            except subprocess.TimeoutExpired:
                sidecar.kill()


if __name__ == "__main__":
    main()
