"""The node agent's reconciler: for each node-mode pod on this node, the rules in its netns.

Fed pods by the watch (:mod:`haltgate.cli.node_watch`), it keeps one state per pod UID and,
on a tick, finds the pods that need work in one pass over ``/proc``, enters each of their
network namespaces and checks (then, if needed, installs) the same rule set the init
container would have (:mod:`haltgate.sidecar.netns_rules`). What it did is recorded as
Events on the pod: ``RedirectInstalled`` (Normal), ``RedirectFailed``,
``RedirectPending`` and ``RedirectReordered`` (Warning: haltgate's jump was no longer first
in ``OUTPUT`` and was moved back), each once per pod and cause; a rule set found already in
place (after an agent restart) is only logged.

It never makes a pod start ungoverned: the pod's own ``haltgate-verify`` step refuses to let
the agent containers start until the redirect works, whatever this agent does or fails to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import click

from haltgate.cli.iptables import parse_apply_args, summary
from haltgate.operator import node_redirect
from haltgate.sidecar import iptables as rules
from haltgate.sidecar import netns_rules, pod_netns

log = logging.getLogger("haltgate.node.agent")

COMPONENT = "haltgate-node-agent"
FAST_RETRY_SECONDS = 1.0
"""Retry interval while a pod is young: its verify step waits 30 x 1 s for the rules."""
SLOW_RETRY_SECONDS = 10.0
FAST_WINDOW_SECONDS = 120.0
"""How long after first seeing a pod its namespace is looked for every second."""

EventSink = Callable[[Mapping[str, Any], Literal["Normal", "Warning"], str, str], None]
"""Posts an Event on a pod: (pod, type, reason, message); best effort, never raises."""


def rule_config(args: Sequence[str]) -> tuple[rules.RuleConfig, rules.Backend]:
    """Parse ``haltgate iptables apply`` arguments into the rule set they install."""
    try:
        config, backend, _ = parse_apply_args(args)
    except click.UsageError as e:
        raise ValueError(e.format_message()) from e
    return config, backend


@dataclass(frozen=True, slots=True)
class AgentSettings:
    node_name: str
    base_args: tuple[str, ...]
    """``iptables apply`` arguments of the injection template, without DNS."""
    cluster_dns: tuple[str, ...]
    node_dns: tuple[str, ...]
    backend: rules.Backend = rules.Backend.AUTO
    pending_grace_seconds: float = 20.0
    """After this long without a process of the pod on the node: a RedirectPending Event."""
    proc: Path = pod_netns.PROC


@dataclass
class PodState:
    pod: Mapping[str, Any]
    first_seen: float
    pending: bool = True
    retry_at: float = 0.0
    done: set[pod_netns.NetnsId] = field(default_factory=set)
    """Namespaces whose rules this process checked or installed."""
    reported: set[str] = field(default_factory=set)
    """Reasons (with their cause) already posted as Events for this pod."""

    @property
    def uid(self) -> str:
        return str((self.pod.get("metadata") or {}).get("uid", ""))


class NodeAgent:
    """Per-pod state and the work of one tick; no threads, no API client of its own."""

    def __init__(self, settings: AgentSettings, post_event: EventSink) -> None:
        self.settings = settings
        self._post = post_event
        self.pods: dict[str, PodState] = {}
        self.listings: netns_rules.Listings = {}
        """How iptables prints each rule set it has checked rule by rule (faster checks)."""

    # ------------------------------------------------------------------ what the watch sees
    def observe(self, event_type: str, pod: Mapping[str, Any], now: float) -> None:
        """A pod was added, changed or deleted (a watch event)."""
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        if not pod_netns.is_pod_uid(uid):
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if (
            event_type == "DELETED"
            or node != self.settings.node_name
            or not node_redirect.is_node_mode(pod)
            or node_redirect.is_finished(pod)
        ):
            self.pods.pop(uid, None)
            return
        state = self.pods.get(uid)
        if state is None:
            log.info("watching %s", node_redirect.describe(pod))
            self.pods[uid] = PodState(pod, first_seen=now)
            return
        # Any change (a sandbox restarted, a container started) is worth a look.
        state.pod = pod
        state.pending = True

    def replace_all(self, pods: Iterable[Mapping[str, Any]], now: float) -> None:
        """A fresh list of the node's pods (start, or after the watch expired)."""
        seen = set()
        for pod in pods:
            seen.add(str((pod.get("metadata") or {}).get("uid") or ""))
            self.observe("ADDED", pod, now)
        for uid in set(self.pods) - seen:
            del self.pods[uid]

    def resync(self) -> None:
        """Look at every pod again, checked namespaces included: a namespace replaced
        without a pod event, or rules changed since (a rule inserted ahead of haltgate's
        jump by a mesh's later init step), are found within one resync period."""
        for state in self.pods.values():
            state.pending = True
            state.done.clear()

    # ------------------------------------------------------------------ work
    def due(self, now: float) -> list[PodState]:
        return [s for s in self.pods.values() if s.pending and s.retry_at <= now]

    def tick(self, now: float) -> None:
        """Check every pod that needs it: one /proc scan, then each pod's namespaces."""
        due = self.due(now)
        if not due:
            return
        found = pod_netns.scan([s.uid for s in due], self.settings.proc)
        for state in due:
            try:
                self._reconcile(state, found.get(state.uid, []), now)
            except Exception as e:  # one pod's surprise must not stop the others
                log.exception("reconciling %s", node_redirect.describe(state.pod))
                self._later(state, now)
                self._report(state, "Warning", "RedirectFailed", f"internal_error: {e}", "bug")

    def _later(self, state: PodState, now: float) -> None:
        young = now - state.first_seen < FAST_WINDOW_SECONDS
        state.retry_at = now + (FAST_RETRY_SECONDS if young else SLOW_RETRY_SECONDS)

    def _report(
        self,
        state: PodState,
        type_: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        key: str = "",
    ) -> None:
        dedupe = f"{reason}/{key}"
        if dedupe in state.reported:
            return
        state.reported.add(dedupe)
        level = logging.INFO if type_ == "Normal" else logging.WARNING
        log.log(level, "%s %s: %s", reason, node_redirect.describe(state.pod), message)
        self._post(state.pod, type_, reason, message)

    def _config(self, state: PodState) -> tuple[rules.RuleConfig, rules.Backend]:
        dns = node_redirect.resolvers(state.pod, self.settings.cluster_dns, self.settings.node_dns)
        config, backend = rule_config(node_redirect.apply_args(self.settings.base_args, dns))
        if backend is rules.Backend.AUTO:
            backend = self.settings.backend
        return config, backend

    def _reconcile(self, state: PodState, pids: list[int], now: float) -> None:
        try:
            config, backend = self._config(state)
        except ValueError as e:  # NodeRedirectError included: the pod cannot be given rules
            state.pending = False
            self._report(state, "Warning", "RedirectFailed", f"invalid_pod: {e}", "config")
            return
        if not pids:
            self._later(state, now)
            if now - state.first_seen >= self.settings.pending_grace_seconds:
                self._report(
                    state,
                    "Warning",
                    "RedirectPending",
                    f"no process of this pod found on node {self.settings.node_name} after "
                    f"{self.settings.pending_grace_seconds:g}s; its haltgate-verify step "
                    "keeps the agent from starting until the egress rules are installed",
                )
            return
        try:
            with pod_netns.open_pod_netns(state.uid, pids, self.settings.proc) as spaces:
                if not spaces:
                    self._later(state, now)
                    return
                for space in spaces:
                    if space.ident in state.done:
                        continue
                    outcome = netns_rules.ensure_rules(space.fd, config, backend, self.listings)
                    state.done.add(space.ident)
                    self._record(state, space, outcome, config)
        except pod_netns.PodNetnsError as e:
            state.pending = False  # a pod's network does not change without a new event
            self._report(state, "Warning", "RedirectFailed", str(e), e.code)
            return
        except (rules.IptablesError, OSError) as e:
            self._later(state, now)
            self._report(
                state, "Warning", "RedirectFailed", f"iptables_failed: {e}"[:1000], "iptables"
            )
            return
        state.pending = False

    def _record(
        self,
        state: PodState,
        space: pod_netns.PodNetns,
        outcome: netns_rules.Outcome,
        config: rules.RuleConfig,
    ) -> None:
        if outcome is netns_rules.Outcome.PRESENT:
            log.info(
                "rules already in place for %s in %s",
                node_redirect.describe(state.pod),
                space.ident,
            )
            return
        if outcome is netns_rules.Outcome.REORDERED:
            self._report(
                state,
                "Warning",
                "RedirectReordered",
                f"a rule had been inserted ahead of haltgate's jump in OUTPUT in the pod's "
                f"network namespace {space.ident} (a mesh or another installer); haltgate "
                "node agent on "
                f"{self.settings.node_name} moved it back to the top (order: agent -> "
                "haltgate -> mesh proxy). If a mesh keeps doing this, install it in CNI mode "
                "or list its proxy UID in injection.meshProxyUIDs",
                f"reordered/{space.ident}",
            )
            return
        self._report(
            state,
            "Normal",
            "RedirectInstalled",
            f"haltgate node agent on {self.settings.node_name} installed the egress rules in "
            f"the pod's network namespace {space.ident}: {summary(config)}",
            str(space.ident),
        )


def monotonic() -> float:
    return time.monotonic()
