"""Where the sidecar refuses to go on the agent's behalf: its own pod.

The sidecar runs under a UID the egress rules exempt, so anything it connects to for the
agent must be somewhere the agent itself could not reach directly: never loopback, the
unspecified address, link-local (cloud metadata endpoints live there) or an address of
this network namespace (the sidecar's admin API, OPA, the agent's own servers). Upstreams
the policy declares are trusted as written (tests run them on loopback); this check is for
targets the agent names itself (absolute-form proxy requests to undeclared hosts).

DNS is resolved here and again when connecting; a name that changes its answer in between
(DNS rebinding within the resolver cache's 10 s) is the residual risk, documented in
docs/sidecar.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from functools import lru_cache

from haltgate.governance.errors import DeniedError
from haltgate.governance.policy_base import FailureType

__all__ = ["check_destination", "forbidden_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=256)
def _bound_here(address: str, version: int) -> bool:
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def forbidden_address(address: IPAddress) -> bool:
    """Loopback, unspecified, link-local, multicast, or an address of this namespace."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if (
        address.is_loopback
        or address.is_unspecified
        or address.is_link_local
        or address.is_multicast
    ):
        return True
    return _bound_here(str(address), address.version)


async def check_destination(host: str, port: int) -> None:
    """Raise :class:`DeniedError` (SAFETY, ``local_destination``) if ``host`` is forbidden."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError:
            return  # unresolvable: the forward fails with upstream_unreachable
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for address in addresses:
        if forbidden_address(address):
            raise DeniedError(
                f"{host} resolves to {address}, an address of this pod or "
                "loopback: not reachable through the sidecar",
                code="local_destination",
                failure_type=FailureType.SAFETY,
            )
