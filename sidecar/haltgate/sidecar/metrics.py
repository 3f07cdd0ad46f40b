"""Prometheus metrics of the sidecar, declared in one place (``haltgate_`` prefix).

Labels are bounded: request kind, decision, stable reason codes, failure types, detector
names, budget dimensions and model names (capped, see :data:`MAX_MODELS`) — never pods,
hosts, runs or request ids.

Identity labels (``namespace``, ``workload``, ``policy``) are the same for every sample of
one sidecar, so they are not part of any metric's label set: :class:`SidecarMetrics` adds
them at scrape time (:attr:`SidecarMetrics.exposed`). Hot-path updates therefore bind only
the per-call labels, and callers cache those children (``Pipeline._child``). An identity
value that is empty (tests, a sidecar started by hand) is left out rather than exported
as ``""``.

Values that already live somewhere else are read at scrape time instead of being updated on
every call: budget use and the halt state from the Governor, the transparent listener's
connection outcomes from its stats.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from haltgate.governance.audit.redact import is_clean

__all__ = [
    "IDENTITY_LABELS",
    "LATENCY_BUCKETS",
    "MAX_MODELS",
    "OTHER_MODEL",
    "UPSTREAM_BUCKETS",
    "SidecarMetrics",
]

log = logging.getLogger("haltgate.sidecar.metrics")

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
"""Added latency buckets in seconds: sub-millisecond resolution where the target is."""

UPSTREAM_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
)
"""Upstream latency buckets in seconds: LLM answers take seconds to minutes."""

IDENTITY_LABELS = ("namespace", "workload", "policy")
"""Labels added to every sample at scrape time (the agent this sidecar governs)."""

MAX_MODELS = 32
"""Distinct ``model`` label values one sidecar exports; later models count as
:data:`OTHER_MODEL`. Model names come from agents' requests, so they must be capped."""

OTHER_MODEL = "_other"
NO_MODEL = "_none"


class SidecarMetrics:
    """Every metric the sidecar exports.

    ``registry`` is where the metrics are registered (give a fresh one per sidecar in
    tests); ``exposed`` is what ``/metrics`` serves: the same samples with the identity
    labels added.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "",
        workload: str = "",
        policy: str = "",
    ) -> None:
        reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.registry = reg
        self.identity: dict[str, str] = {}
        self.set_identity(namespace=namespace, workload=workload, policy=policy)
        self._models: dict[str, str] = {}
        self._governor: Callable[[], Any] | None = None
        self._transparent: Callable[[], Mapping[str, int] | None] | None = None
        self._halt_seen: tuple[Any, ...] | None = None

        # ---------------------------------------------------------------- calls
        self.requests = Counter(
            "haltgate_requests_total",
            "Governed requests by kind (llm, mcp, http, connection, unknown), decision "
            "(allow, deny, error) and reason code ('' when allowed).",
            ["kind", "decision", "code"],
            registry=reg,
        )
        self.added_latency = Histogram(
            "haltgate_added_latency_seconds",
            "Time the sidecar adds to a call (its own work, upstream time excluded).",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.upstream_latency = Histogram(
            "haltgate_upstream_latency_seconds",
            "Time from forwarding a call to the upstream's response headers.",
            ["kind"],
            buckets=UPSTREAM_BUCKETS,
            registry=reg,
        )
        self.streams_cut = Counter(
            "haltgate_streams_cut_total",
            "Streams ended by haltgate (budget crossed, halt) or by the upstream (truncated).",
            ["reason"],
            registry=reg,
        )

        # ---------------------------------------------------------------- spend
        self.tokens = Counter(
            "haltgate_tokens_total",
            "LLM tokens by model and type (input, output, cached_input, cache_write, "
            "reasoning). Cached input tokens are also counted in input.",
            ["model", "type"],
            registry=reg,
        )
        self.cost = Counter(
            "haltgate_cost_usd_total",
            "Spend in US dollars by model, priced with the policy's price table (a call "
            "whose usage is unknown is charged its reserved worst case, like the budget).",
            ["model"],
            registry=reg,
        )

        # ---------------------------------------------------------------- halts, budgets
        self.halts = Counter(
            "haltgate_halts_total",
            "Runs halted (every later call refused until an operator reset), by failure "
            "type (EXHAUSTION, STAGNATION, OVERRISK, SAFETY, EXTERNAL) and reason code.",
            ["failure", "code"],
            registry=reg,
        )

        # ---------------------------------------------------------------- controls
        self.guardrail_findings = Counter(
            "haltgate_guardrail_findings_total",
            "Guardrail findings by detector (prompt_injection, pii, secrets, ...) and "
            "action (block, redact, log; monitor for monitor-only findings).",
            ["detector", "action"],
            registry=reg,
        )
        self.opa_decisions = Counter(
            "haltgate_opa_decisions_total",
            "OPA policy decisions by result (allow, deny, error: refused because OPA "
            "failed, fail_open: allowed because OPA failed and the policy says open).",
            ["result"],
            registry=reg,
        )
        self.would_refuse = Counter(
            "haltgate_would_refuse_total",
            "Refusals a policy in monitor mode (spec.enforcement: monitor) would have made "
            "and did not, by stage (halted, tools, mcp, flows, guardrails, opa, budget, "
            "response), reason code and failure type ('' for a control that failed).",
            ["stage", "code", "failure_type"],
            registry=reg,
        )
        self.guardrail_unscanned = Counter(
            "haltgate_guardrail_unscanned_total",
            "Answers the response guardrails could not read, by reason (encoding, charset, "
            "type, size, corrupt) and outcome (refused under failMode closed, passed "
            "under open).",
            ["reason", "outcome"],
            registry=reg,
        )
        self.fail_open = Counter(
            "haltgate_fail_open_total",
            "Controls that failed and were passed because the policy says fail open, by "
            "control (opa, guardrails, pool). Alert on any increase.",
            ["control"],
            registry=reg,
        )

        # ---------------------------------------------------------------- process
        self.policy_reloads = Counter(
            "haltgate_policy_reloads_total",
            "Policy file reloads by result (ok, invalid).",
            ["result"],
            registry=reg,
        )
        self.policy_valid = Gauge(
            "haltgate_policy_last_reload_ok",
            "1 when the last policy file read was valid, 0 when the old policy is kept.",
            registry=reg,
        )
        # A sidecar only starts with a valid policy (else it exits 1): valid until a reload
        # says otherwise.
        self.policy_valid.set(1)
        self.connections_refused = Counter(
            "haltgate_connections_refused_total",
            "Connections refused at once because their listener (explicit, transparent, "
            "admin, metrics) holds its cap of live connections.",
            ["listener"],
            registry=reg,
        )
        self.body_bytes_in_flight = Gauge(
            "haltgate_body_bytes_in_flight",
            "Request and response body bytes the sidecar holds in memory now (bounded by "
            "its body memory budget).",
            registry=reg,
        )
        self.flow_value_fill = Gauge(
            "haltgate_flow_value_filter_fill_ratio",
            "Share of the bits set in the run's spec.flows value filter (rules with action "
            "deny-untrusted-values); false positives are about this to the 7th power.",
            registry=reg,
        )
        self.body_budget_refusals = Counter(
            "haltgate_body_budget_refusals_total",
            "Calls refused because the sidecar-wide body memory budget was used up, by "
            "direction (request, response).",
            ["direction"],
            registry=reg,
        )
        self.ready = Gauge(
            "haltgate_ready",
            "1 when the sidecar can govern calls (listening, audit spool writable), else 0 "
            "(see /readyz for the reason).",
            registry=reg,
        )
        self.spool_limit = Gauge(
            "haltgate_audit_spool_limit_bytes",
            "Size limit of the local audit spool (compare haltgate_audit_spool_bytes).",
            registry=reg,
        )
        reg.register(_ScrapeTimeCollector(self))
        self.exposed = CollectorRegistry(auto_describe=False)
        """What ``/metrics`` serves: ``registry`` with the identity labels added."""
        self.exposed.register(_IdentityCollector(self))

    # -------------------------------------------------------------------- identity

    def set_identity(
        self,
        *,
        namespace: str | None = None,
        workload: str | None = None,
        policy: str | None = None,
    ) -> None:
        """Set the identity labels (``None`` keeps a value; ``""`` drops the label)."""
        current = dict(self.identity)
        for name, value in (("namespace", namespace), ("workload", workload), ("policy", policy)):
            if value is None:
                continue
            if value:
                current[name] = value
            else:
                current.pop(name, None)
        # One assignment: a scrape in another thread sees the old or the new dict whole.
        self.identity = current

    # -------------------------------------------------------------------- bounded labels

    def model_label(self, model: str | None) -> str:
        """``model`` as a bounded label value (the first :data:`MAX_MODELS` seen)."""
        if not model:
            return NO_MODEL
        label = self._models.get(model)
        if label is None:
            # A model name is whatever the agent wrote: one that holds a key or personal
            # data is never exported as a label.
            label = model if len(self._models) < MAX_MODELS and is_clean(model) else OTHER_MODEL
            if len(self._models) < 4 * MAX_MODELS:  # the lookup cache is bounded too
                self._models[model] = label
        return label

    # -------------------------------------------------------------------- scrape-time sources

    def watch_governor(self, governor: Callable[[], Any]) -> None:
        """Read budget use and the halt state from ``governor()`` at every scrape."""
        self._governor = governor

    def watch_transparent(self, outcomes: Callable[[], Mapping[str, int] | None]) -> None:
        """Export the transparent listener's connection outcome counts at every scrape."""
        self._transparent = outcomes

    def note_halt(self, snapshot: Mapping[str, Any] | None) -> None:
        """Count a halt once, when first seen (refusal path and every scrape)."""
        halt = snapshot.get("halt") if snapshot else None
        if not halt:
            self._halt_seen = None
            return
        key = (halt.get("ts"), halt.get("failure_type"), halt.get("code"))
        if key == self._halt_seen:
            return
        self._halt_seen = key
        self.halts.labels(
            str(halt.get("failure_type") or "EXTERNAL"), str(halt.get("code") or "halted")
        ).inc()

    def sync_halt(self, governor: Any | None) -> None:
        """Count the governor's halt if it is new (cheap when not halted)."""
        if governor is None:
            return
        if not governor.halted:
            self._halt_seen = None
            return
        self.note_halt(governor.snapshot(time.time()))

    def _governor_samples(self) -> Iterable[Metric]:
        get = self._governor
        if get is None:
            return
        try:
            governor = get()
            if governor is None:
                return
            snap = governor.snapshot(time.time())
        except Exception:  # a scrape must never take the sidecar down
            log.exception("cannot read the governor for metrics")
            return
        self.note_halt(snap)
        halted = GaugeMetricFamily(
            "haltgate_halted",
            "1 while the run is halted (every call refused until an operator reset).",
            labels=["failure", "code"],
        )
        halt = snap.get("halt")
        if halt:
            halted.add_metric([str(halt.get("failure_type")), str(halt.get("code"))], 1.0)
        else:
            halted.add_metric(["", ""], 0.0)
        yield halted
        ratio = GaugeMetricFamily(
            "haltgate_budget_used_ratio",
            "Budget used (settled plus reserved) over its limit, per dimension "
            "(calls, tokens, cost_usd, ...); 1 means exhausted.",
            labels=["dimension"],
        )
        limit_fam = GaugeMetricFamily(
            "haltgate_budget_limit",
            "Budget limit per dimension, in the dimension's unit "
            "(USD, tokens, calls, seconds, risk).",
            labels=["dimension"],
        )
        used_fam = GaugeMetricFamily(
            "haltgate_budget_used",
            "Budget used (settled plus reserved) per dimension.",
            labels=["dimension"],
        )
        for dim, values in sorted((snap.get("budget") or {}).items()):
            limit = values.get("limit")
            used = float(values.get("used") or 0.0) + float(values.get("reserved") or 0.0)
            used_fam.add_metric([dim], used)
            if limit:
                limit_fam.add_metric([dim], float(limit))
                ratio.add_metric([dim], used / float(limit))
        yield ratio
        yield limit_fam
        yield used_fam
        yield GaugeMetricFamily(
            "haltgate_calls_in_flight",
            "Calls reserved and not yet settled (forwarded, waiting for the upstream).",
            value=float(len(snap.get("in_flight") or ())),
        )

    def _transparent_samples(self) -> Iterable[Metric]:
        get = self._transparent
        outcomes = get() if get is not None else None
        if outcomes is None:
            return
        fam = CounterMetricFamily(
            "haltgate_transparent_connections",
            "Connections accepted by the transparent listener, by outcome (http, "
            "tls_inspect, tls_passthrough, refused_<code>).",
            labels=["outcome"],
        )
        for outcome, n in sorted(dict(outcomes).items()):
            fam.add_metric([outcome], float(n))
        yield fam


class _ScrapeTimeCollector(Collector):
    """Samples computed when Prometheus scrapes (no hot-path cost)."""

    def __init__(self, metrics: SidecarMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterable[Metric]:
        yield from self._m._governor_samples()
        yield from self._m._transparent_samples()

    def describe(self) -> Iterable[Metric]:
        return []  # dynamic families: never described ahead (no name clash checks)


class _IdentityCollector(Collector):
    """Re-exposes ``metrics.registry`` with the identity labels added to every sample."""

    def __init__(self, metrics: SidecarMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterable[Metric]:
        identity = self._m.identity
        for family in self._m.registry.collect():
            if identity:
                family.samples = [
                    s._replace(labels={**s.labels, **identity}) for s in family.samples
                ]
            yield family
