"""The pod's egress rules: all agent TCP goes to the sidecar, nothing else leaves the pod.

The init container runs ``haltgate iptables apply`` once, as root with NET_ADMIN, before the
agent starts. The same rules are installed for IPv4 (``iptables``) and IPv6 (``ip6tables``):
an IPv6 route that is left open is the whole boundary left open.

nat table, chain ``HALTGATE_OUTPUT`` (jumped to from ``OUTPUT`` for TCP):
  1. the proxy UID's own connections are not redirected (it is the way out);
  2. loopback destinations are not redirected (services inside the pod; the filter table
     still refuses the sidecar's admin and metrics ports to other UIDs);
  3. TCP DNS to the configured resolvers and explicitly excluded ports go direct;
  4. every other TCP connection is REDIRECTed to the transparent listener (17001).

filter table, chain ``HALTGATE_OUTPUT`` (jumped to from ``OUTPUT``):
  1. packets of flows already allowed (ESTABLISHED, RELATED) pass: a flow can only be
     established if its first packet passed these rules or it was opened from outside;
  2. the proxy UID passes;
  3. other UIDs are refused the protected ports (admin API, metrics) on any address;
  4. loopback passes, by interface and by destination address: a REDIRECTed packet keeps the
     outgoing interface routed before NAT (``eth0``), so ``-o lo`` alone would not match it
     and every governed call would time out;
  5. DNS (UDP and TCP port 53) only to the configured resolvers;
  6. IPv6 only: the neighbour discovery messages the kernel itself sends;
  7. everything else is dropped: UDP, ICMP (ping sockets), any other protocol.

Both tables are written with ``iptables-restore --noflush``: each table's chain content and
its jump rule change in one atomic commit, and applying twice gives the same rule set.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

CHAIN = "HALTGATE_OUTPUT"
"""Name of haltgate's own chain in the nat and filter tables (both families)."""

DEFAULT_PROXY_PORT = 17001
DEFAULT_PROTECTED_PORTS = (17020, 17090)
"""Sidecar ports other UIDs may not reach over TCP at all: the admin API and metrics.

The explicit proxy port (17000) stays reachable: the injector sets ``HTTP(S)_PROXY`` and
base URLs that point at it, and every call there is governed like a redirected one.
Prometheus scrapes 17090 from outside the pod (INPUT), which these OUTPUT rules leave alone.
"""

NEIGHBOUR_DISCOVERY_ICMPV6 = ("133", "134", "135", "136", "143")
"""Router solicitation/advertisement, neighbour solicitation/advertisement, MLDv2 report:
sent by the kernel (not by a user socket) and needed for IPv6 to work at all. A process
without CAP_NET_RAW cannot forge them (ping sockets send echo requests only)."""

COMMAND_TIMEOUT_SECONDS = 30.0
"""Bound on one iptables invocation (the xtables lock can be held by another process)."""


class Family(StrEnum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"


class Backend(StrEnum):
    """Which iptables flavour to call. ``auto`` uses whatever ``iptables`` is on PATH."""

    AUTO = "auto"
    NFT = "nft"
    LEGACY = "legacy"


class IptablesError(Exception):
    """An iptables command failed; ``code`` is stable for logs and exit messages."""

    code = "iptables_failed"


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """What the boundary allows. Validated on construction; all ports are TCP ports."""

    proxy_uid: int
    """UID of the sidecar process: the only UID whose connections leave the pod directly."""
    proxy_port: int = DEFAULT_PROXY_PORT
    """Transparent listener the other UIDs' TCP connections are redirected to."""
    protected_ports: tuple[int, ...] = DEFAULT_PROTECTED_PORTS
    """Ports other UIDs may not connect to at all (any destination)."""
    exclude_ports: tuple[int, ...] = ()
    """Outbound TCP destination ports that bypass the sidecar (a deliberate, audited hole)."""
    dns_servers: tuple[str, ...] = ()
    """Resolvers other UIDs may query on port 53 (UDP and TCP); IPv4 and IPv6 addresses."""
    mesh_uids: tuple[int, ...] = ()
    """UIDs of a service mesh's proxy (Envoy 1337, Linkerd 2102): their connections are
    neither redirected nor dropped, so the order is agent -> haltgate -> mesh -> network.
    They are not allowed to reach the protected ports."""

    def __post_init__(self) -> None:
        for uid in (self.proxy_uid, *self.mesh_uids):
            if not 0 <= uid < 2**32 - 1:
                raise ValueError(f"uid out of range: {uid}")
        if self.proxy_uid in self.mesh_uids:
            raise ValueError(f"mesh UID {self.proxy_uid} is the sidecar's own UID")
        for port in (self.proxy_port, *self.protected_ports, *self.exclude_ports):
            if not 1 <= port <= 65535:
                raise ValueError(f"port out of range: {port}")
        if self.proxy_port in self.exclude_ports or self.proxy_port in self.protected_ports:
            raise ValueError("the proxy port cannot be excluded or protected")
        for server in self.dns_servers:
            ipaddress.ip_address(server)  # raises ValueError with the bad value

    def resolvers(self, family: Family) -> list[str]:
        """The DNS servers of one address family, as host prefixes (``/32``, ``/128``)."""
        version = 4 if family is Family.IPV4 else 6
        out = []
        for server in self.dns_servers:
            address = ipaddress.ip_address(server)
            if address.version == version:
                out.append(f"{address}/{address.max_prefixlen}")
        return out


@dataclass(frozen=True, slots=True)
class TableRules:
    """The content of haltgate's chain in one table, plus the jump from a built-in chain."""

    table: str
    jump: tuple[str, ...]
    """Match of the jump rule, e.g. ``("-p", "tcp")``; kept the first rule of OUTPUT."""
    rules: list[list[str]] = field(default_factory=list)


def _loopback(family: Family) -> str:
    return "127.0.0.0/8" if family is Family.IPV4 else "::1/128"


def nat_rules(config: RuleConfig, family: Family) -> TableRules:
    """Rules of the nat table: redirect every other UID's TCP to the transparent listener."""
    uid = str(config.proxy_uid)
    rules: list[list[str]] = [
        ["-m", "owner", "--uid-owner", uid, "-j", "RETURN"],
        # A mesh proxy's own connections go on to the mesh's chain (after this one).
        *(["-m", "owner", "--uid-owner", str(m), "-j", "RETURN"] for m in config.mesh_uids),
        ["-d", _loopback(family), "-j", "RETURN"],
    ]
    for resolver in config.resolvers(family):
        rules.append(["-p", "tcp", "-d", resolver, "--dport", "53", "-j", "RETURN"])
    for port in config.exclude_ports:
        rules.append(["-p", "tcp", "--dport", str(port), "-j", "RETURN"])
    rules.append(["-p", "tcp", "-j", "REDIRECT", "--to-ports", str(config.proxy_port)])
    return TableRules(table="nat", jump=("-p", "tcp"), rules=rules)


def filter_rules(config: RuleConfig, family: Family) -> TableRules:
    """Rules of the filter table: what other UIDs may send at all."""
    uid = str(config.proxy_uid)
    rules: list[list[str]] = [
        ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"],
        ["-m", "owner", "--uid-owner", uid, "-j", "RETURN"],
    ]
    reset = "tcp-reset"
    for port in config.protected_ports:
        rules.append(["-p", "tcp", "--dport", str(port), "-j", "REJECT", "--reject-with", reset])
    # After the protected ports: a mesh proxy may send anywhere but to haltgate's admin.
    rules += [["-m", "owner", "--uid-owner", str(m), "-j", "RETURN"] for m in config.mesh_uids]
    rules += [
        ["-o", "lo", "-j", "RETURN"],
        # REDIRECTed packets: destination rewritten to loopback, interface still eth0.
        ["-d", _loopback(family), "-j", "RETURN"],
    ]
    for resolver in config.resolvers(family):
        rules.append(["-p", "udp", "-d", resolver, "--dport", "53", "-j", "RETURN"])
        rules.append(["-p", "tcp", "-d", resolver, "--dport", "53", "-j", "RETURN"])
    for port in config.exclude_ports:
        rules.append(["-p", "tcp", "--dport", str(port), "-j", "RETURN"])
    if family is Family.IPV6:
        for icmp_type in NEIGHBOUR_DISCOVERY_ICMPV6:
            rules.append(["-p", "ipv6-icmp", "--icmpv6-type", icmp_type, "-j", "RETURN"])
    rules.append(["-j", "DROP"])
    return TableRules(table="filter", jump=(), rules=rules)


def tables(config: RuleConfig, family: Family) -> list[TableRules]:
    """Both tables of one family, nat first (the order they are applied in)."""
    return [nat_rules(config, family), filter_rules(config, family)]


MAX_JUMPS = 16
"""Bound on the jump rules removed from ``OUTPUT`` at once (each apply adds at most one)."""


def jump_rule(table: TableRules) -> str:
    """haltgate's jump from ``OUTPUT`` in one table, as ``iptables -S`` prints it."""
    return " ".join(["-A", "OUTPUT", *table.jump, "-j", CHAIN])


@dataclass(frozen=True, slots=True)
class JumpPlace:
    """Where haltgate's jump sits in one table's ``OUTPUT`` chain."""

    first: bool
    """The jump is the chain's first rule: every packet meets haltgate's chain before any
    other rule of ``OUTPUT`` (a mesh's jump, an operator's ACCEPT)."""
    count: int
    """How many copies of the jump the chain holds."""
    ahead: str = ""
    """The rule that sits first instead, when ``first`` is false and the chain has rules."""


def jump_place(output_listing: str, table: TableRules) -> JumpPlace:
    """Read ``iptables -t TABLE -S OUTPUT`` output: is haltgate's jump first, and how often
    is it there."""
    appended = [line for line in output_listing.splitlines() if line.startswith("-A OUTPUT ")]
    ours = jump_rule(table)
    count = sum(1 for line in appended if line == ours)
    first = bool(appended) and appended[0] == ours
    return JumpPlace(first=first, count=count, ahead="" if first or not appended else appended[0])


def restore_payload(table: TableRules, *, add_jump: bool, drop_jumps: int = 0) -> str:
    """``iptables-restore --noflush`` input that replaces haltgate's chain in one table.

    Declaring the chain (``:HALTGATE_OUTPUT - [0:0]``) flushes it with ``--noflush`` as well,
    so the chain content is replaced, never appended to. The jump rule is added only when
    it is not already first (``add_jump``), which keeps a second apply from duplicating it;
    ``drop_jumps`` copies found elsewhere in ``OUTPUT`` are deleted in the same commit, so
    moving the jump back to the top never leaves a moment without it.
    """
    lines = [f"*{table.table}", f":{CHAIN} - [0:0]"]
    for _ in range(min(drop_jumps, MAX_JUMPS)):
        lines.append(" ".join(["-D", "OUTPUT", *table.jump, "-j", CHAIN]))
    if add_jump:
        lines.append(" ".join(["-I", "OUTPUT", "1", *table.jump, "-j", CHAIN]))
    for rule in table.rules:
        lines.append(" ".join(["-A", CHAIN, *rule]))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def render(config: RuleConfig, families: Sequence[Family] = tuple(Family)) -> str:
    """The complete rule set as ``iptables-restore`` text, per family (for ``--dry-run``)."""
    parts = []
    for family in families:
        tool = "iptables" if family is Family.IPV4 else "ip6tables"
        parts.append(f"# {tool}-restore --noflush")
        for table in tables(config, family):
            parts.append(restore_payload(table, add_jump=True))
    return "\n".join(parts)


Runner = Callable[[Sequence[str], str | None], subprocess.CompletedProcess[str]]


def run_command(argv: Sequence[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
    """Run one iptables command, bounded in time, capturing its output."""
    try:
        return subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise IptablesError(f"{argv[0]} did not finish in {COMMAND_TIMEOUT_SECONDS:g}s") from e
    except FileNotFoundError as e:
        raise IptablesError(f"{argv[0]} not found: install iptables") from e


@dataclass(frozen=True, slots=True)
class Tool:
    """The two binaries of one family and backend (``iptables`` + ``iptables-restore``)."""

    family: Family
    backend: Backend = Backend.AUTO

    @property
    def base(self) -> str:
        name = "iptables" if self.family is Family.IPV4 else "ip6tables"
        return name if self.backend is Backend.AUTO else f"{name}-{self.backend.value}"

    @property
    def restore(self) -> str:
        return f"{self.base}-restore"

    # -w: wait for the xtables lock instead of failing when another process holds it.
    def command(self, *args: str) -> list[str]:
        return [self.base, "-w", "5", *args]


def ipv6_available() -> bool:
    """Whether the kernel has IPv6 at all (no IPv6 stack: no IPv6 hole to close)."""
    return Path("/proc/net/if_inet6").exists()


class Installer:
    """Applies and removes the rule set through the iptables binaries."""

    def __init__(
        self,
        backend: Backend = Backend.AUTO,
        runner: Runner = run_command,
        families: Sequence[Family] | None = None,
    ) -> None:
        self._backend = backend
        self._run = runner
        if families is None:
            families = [Family.IPV4, Family.IPV6] if ipv6_available() else [Family.IPV4]
        self.families = list(families)

    def _check(self, argv: Sequence[str], stdin: str | None = None) -> str:
        result = self._run(argv, stdin)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()[:2000]
            raise IptablesError(f"{' '.join(argv)} failed ({result.returncode}): {detail}")
        return result.stdout

    def _has_jump(self, tool: Tool, table: TableRules) -> bool:
        argv = tool.command("-t", table.table, "-C", "OUTPUT", *table.jump, "-j", CHAIN)
        return self._run(argv, None).returncode == 0

    def jump_place(self, tool: Tool, table: TableRules) -> JumpPlace:
        """Where haltgate's jump sits in ``OUTPUT`` (a listing that fails: nowhere)."""
        listed = self._run(tool.command("-t", table.table, "-S", "OUTPUT"), None)
        if listed.returncode != 0:
            return JumpPlace(first=False, count=0)
        return jump_place(listed.stdout, table)

    def apply(self, config: RuleConfig) -> None:
        """Install (or replace) the rules for every family, with haltgate's jump first in
        ``OUTPUT`` (moved back to the top when something was inserted ahead of it, e.g. a
        mesh's jump: the order is agent -> haltgate -> mesh). Safe to run again."""
        for family in self.families:
            tool = Tool(family, self._backend)
            for table in tables(config, family):
                place = self.jump_place(tool, table)
                payload = restore_payload(
                    table,
                    add_jump=not place.first,
                    drop_jumps=0 if place.first else place.count,
                )
                self._check([tool.restore, "-w", "5", "--noflush"], payload)

    def remove(self) -> None:
        """Delete the jump rules and haltgate's chains; absent pieces are not an error."""
        for family in self.families:
            tool = Tool(family, self._backend)
            for table in tables(RuleConfig(proxy_uid=0), family):
                # Bounded: a rule can only have been inserted a handful of times.
                for _ in range(16):
                    if not self._has_jump(tool, table):
                        break
                    self._check(
                        tool.command("-t", table.table, "-D", "OUTPUT", *table.jump, "-j", CHAIN)
                    )
                exists = self._run(tool.command("-t", table.table, "-S", CHAIN), None)
                if exists.returncode == 0:
                    self._check(tool.command("-t", table.table, "-F", CHAIN))
                    self._check(tool.command("-t", table.table, "-X", CHAIN))

    def save(self) -> str:
        """The current rule set of every family (``iptables-save``), for diagnosis and tests."""
        out = []
        for family in self.families:
            tool = Tool(family, self._backend)
            out.append(self._check([f"{tool.base}-save"]))
        return "\n".join(out)


def system_resolvers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """Nameserver addresses from resolv.conf (the pod's DNS, e.g. the kube-dns service IP)."""
    try:
        text = resolv_conf.read_text()
    except OSError:
        return []
    servers = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                # Drop a zone suffix (fe80::1%eth0): iptables matches the address only.
                servers.append(str(ipaddress.ip_address(parts[1].split("%")[0])))
            except ValueError:
                continue
    return servers


def binaries_present(backend: Backend = Backend.AUTO) -> bool:
    """Whether the IPv4 restore binary of this backend is installed."""
    return shutil.which(Tool(Family.IPV4, backend).restore) is not None


def is_root() -> bool:
    return os.geteuid() == 0
