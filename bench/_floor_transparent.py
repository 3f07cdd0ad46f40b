"""The transparent path as a target of ``bench/http_floor.py --framing``: a sidecar with its
transparent listener on each HTTP server, in this process, and a loopback front that hands
every connection it accepts to that listener (``TransparentListener.hand_over``) with the
recording upstream as its original destination: what the listener does with a redirected
plain-HTTP connection after ``SO_ORIGINAL_DST`` and the peek, without needing iptables (the
kernel's part is tested in tests/netns). Requests name the upstream in ``Host`` there (the
destination check would refuse ``Host: a``; see :func:`for_transparent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import yaml

from haltgate.governance.audit import MemoryAuditSink
from haltgate.sidecar.original_destination import OriginalDestination
from haltgate.sidecar.server import Sidecar
from haltgate.sidecar.startup import HTTP_SERVERS, Listen, SidecarSettings

_HOST_A = re.compile(rb"(\r?\n)Host: a(\r?\n)")


def for_transparent(data: bytes, up_port: int) -> bytes:
    """A case's bytes with ``Host: a`` naming the upstream the connection was going to."""
    return _HOST_A.sub(rb"\1Host: 127.0.0.1:%d\2" % up_port, data)


async def _front(sidecar: Sidecar, od: OriginalDestination) -> tuple[int, asyncio.Task[None]]:
    """A loopback port whose connections are handed to ``sidecar``'s transparent listener."""
    transparent = sidecar.transparent
    assert transparent is not None
    loop = asyncio.get_running_loop()
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    lsock.setblocking(False)

    async def accept() -> None:
        with lsock:
            while True:
                sock, _ = await loop.sock_accept(lsock)
                sock.setblocking(False)
                await transparent.hand_over(sock, od, None)

    return lsock.getsockname()[1], asyncio.ensure_future(accept())


@contextlib.asynccontextmanager
async def transparent_targets(
    tmp: Path, up_port: int, policy: dict[str, object]
) -> AsyncIterator[dict[str, int]]:
    """``{"transparent (server)": front port}`` for each HTTP server, stopped on exit."""
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # its 400s, logged
    token = tmp / "admin-token"
    token.write_text("bench-admin-token-0123456789\n")
    od = OriginalDestination("127.0.0.1", up_port, tls=False, sni=None)
    sidecars: list[Sidecar] = []
    fronts: list[asyncio.Task[None]] = []
    ports: dict[str, int] = {}
    try:
        for server in HTTP_SERVERS:
            path = tmp / f"transparent-{server}.yaml"
            path.write_text(yaml.safe_dump(policy))
            loopback = Listen("127.0.0.1", 0)
            sidecar = Sidecar(
                SidecarSettings(
                    policy_path=path,
                    admin_token_file=token,
                    state_dir=None,
                    explicit=loopback,
                    admin=loopback,
                    metrics=loopback,
                    transparent=loopback,
                    http_server=server,
                ),
                audit=MemoryAuditSink(),
            )
            await sidecar.start()
            sidecars.append(sidecar)
            port, task = await _front(sidecar, od)
            fronts.append(task)
            ports[f"transparent ({server})"] = port
        yield ports
    finally:
        for task in fronts:
            task.cancel()
        for sidecar in sidecars:
            await sidecar.stop()
