"""Check and install the pod's egress rules inside another network namespace, in-process.

A network namespace is a per-thread attribute: a fresh worker thread ``setns()``-es into the
pod's namespace and runs the same :class:`haltgate.sidecar.iptables.Installer` the init
container runs; the iptables processes it starts are forked from that thread and so work in
the pod's namespace, while the rest of the process (the API watch, other pods) stays in its
own. The thread returns to its original namespace before it ends, and ends anyway: no thread
is ever reused in a foreign namespace.

Idempotent: the rules are checked first (every rule of haltgate's chains, their count, and
the jump from ``OUTPUT`` as that chain's first rule, per table and family) and installed
only when something differs; an installation is checked again afterwards. The jump must be
first because the documented order is agent -> haltgate -> mesh proxy: a rule inserted
ahead of it later (a mesh's jump, an ACCEPT) would see the agent's packets before haltgate
does; it is moved back to the top (``Outcome.REORDERED``). Needs CAP_SYS_ADMIN (setns) and
CAP_NET_ADMIN.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from haltgate.sidecar import iptables as rules

log = logging.getLogger("haltgate.node.rules")

CLONE_NEWNET = 0x40000000
THREAD_TIMEOUT_SECONDS = 300.0
"""Bound on one check-and-install in a namespace (each iptables call has its own bound)."""

T = TypeVar("T")


class Outcome(StrEnum):
    PRESENT = "present"
    """The rules were already in place; nothing was changed."""
    INSTALLED = "installed"
    """The rules were missing or different, and were installed (and checked)."""
    REORDERED = "reordered"
    """The rules were all there but another rule sat ahead of haltgate's jump in
    ``OUTPUT``; the jump was moved back to the top (and everything checked)."""


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNET): {os.strerror(err)}")


def run_in_netns(fd: int, work: Callable[[], T]) -> T:
    """Run ``work`` in a fresh thread that has entered the network namespace ``fd``."""
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd)
            try:
                result.append(work())
            finally:
                _setns(own)
        except BaseException as e:  # handed to the caller below
            error.append(e)
        finally:
            os.close(own)

    worker = threading.Thread(target=body, name="haltgate-netns", daemon=True)
    worker.start()
    worker.join(THREAD_TIMEOUT_SECONDS)
    if worker.is_alive():
        raise rules.IptablesError(f"no answer within {THREAD_TIMEOUT_SECONDS:g}s in the namespace")
    if error:
        raise error[0]
    return result[0]


def families_here() -> list[rules.Family]:
    """Families of the current thread's namespace (``/proc/net`` would be the process's)."""
    ipv6 = Path("/proc/thread-self/net/if_inet6").exists()
    return [rules.Family.IPV4, rules.Family.IPV6] if ipv6 else [rules.Family.IPV4]


ListingKey = tuple[rules.RuleConfig, rules.Family, rules.Backend, str]
Listings = dict[ListingKey, str]
"""How iptables itself prints (``-S``) haltgate's chain for a rule set, family, backend and
table, learnt from a namespace where every rule was checked one by one. Later checks of the
same rule set compare one listing instead of checking each rule (two processes per table,
not one per rule)."""


def _chain_listing(tool: rules.Tool, table: str, runner: rules.Runner) -> str | None:
    listed = runner(tool.command("-t", table, "-S", rules.CHAIN), None)
    if listed.returncode != 0:
        return None  # no such chain
    return listed.stdout


JUMP_NOT_FIRST = "jump_not_first"
"""The :func:`difference` of a namespace whose only fault is a rule ahead of the jump."""


def difference(
    config: rules.RuleConfig,
    families: Sequence[rules.Family],
    backend: rules.Backend = rules.Backend.AUTO,
    runner: rules.Runner = rules.run_command,
    known: Listings | None = None,
) -> str | None:
    """What keeps the current namespace from holding exactly haltgate's rule set for
    ``config`` (None: nothing): the jump as the first rule of ``OUTPUT`` and, in haltgate's
    chain, every rule and nothing else (rule by rule, or against a listing in ``known``,
    which a rule-by-rule success fills in). A jump that is present but not first gives
    :data:`JUMP_NOT_FIRST` followed by the table, family and the rule ahead of it."""
    not_first = None
    for family in families:
        tool = rules.Tool(family, backend)
        for table in rules.tables(config, family):
            where = f"{table.table} OUTPUT ({family.value})"
            output = runner(tool.command("-t", table.table, "-S", "OUTPUT"), None)
            if output.returncode != 0:
                return f"{where}: cannot be listed"
            place = rules.jump_place(output.stdout, table)
            if place.count == 0:
                return f"{where}: no jump to {rules.CHAIN}"
            if not place.first and not_first is None:
                not_first = f"{JUMP_NOT_FIRST}: {where}: {place.ahead!r} is ahead of haltgate's"
            listing = _chain_listing(tool, table.table, runner)
            if listing is None:
                return f"{where}: no chain {rules.CHAIN}"
            key = (config, family, backend, table.table)
            if known is not None and key in known:
                if listing != known[key]:
                    return f"{where}: {rules.CHAIN} differs from the rule set"
                continue
            if sum(1 for line in listing.splitlines() if line.startswith("-A ")) != len(
                table.rules
            ):
                return f"{where}: {rules.CHAIN} has a different number of rules"
            for rule in table.rules:
                check = tool.command("-t", table.table, "-C", rules.CHAIN, *rule)
                if runner(check, None).returncode != 0:
                    return f"{where}: missing {' '.join(rule)!r}"
            if known is not None:
                known[key] = listing
    return not_first


def rules_present(
    config: rules.RuleConfig,
    families: Sequence[rules.Family],
    backend: rules.Backend = rules.Backend.AUTO,
    runner: rules.Runner = rules.run_command,
    known: Listings | None = None,
) -> bool:
    """Whether the current namespace holds exactly haltgate's rule set, jump first."""
    return difference(config, families, backend, runner, known) is None


def ensure_rules_here(
    config: rules.RuleConfig,
    backend: rules.Backend = rules.Backend.AUTO,
    known: Listings | None = None,
) -> Outcome:
    """Check, and install if needed, the rules in the current thread's namespace."""
    families = families_here()
    found = difference(config, families, backend, known=known)
    if found is None:
        return Outcome.PRESENT
    log.info("installing: %s", found)
    rules.Installer(backend, families=families).apply(config)
    after = difference(config, families, backend, known=known)
    if after is not None:
        raise rules.IptablesError(f"the rules are not in place after installing them: {after}")
    if found.startswith(JUMP_NOT_FIRST):
        log.warning("moved haltgate's jump back to the top: %s", found)
        return Outcome.REORDERED
    return Outcome.INSTALLED


def ensure_rules(
    netns_fd: int,
    config: rules.RuleConfig,
    backend: rules.Backend = rules.Backend.AUTO,
    known: Listings | None = None,
) -> Outcome:
    """Check, and install if needed, the rules inside the namespace ``netns_fd``."""
    return run_in_netns(netns_fd, lambda: ensure_rules_here(config, backend, known))
