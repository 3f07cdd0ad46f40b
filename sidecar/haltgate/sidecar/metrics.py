"""Prometheus metrics of the sidecar, declared in one place (``haltgate_`` prefix).

Labels are bounded: request kind, decision, stable reason codes, failure types — never
agents, pods, hosts or request ids. Each instance takes its own registry so tests and
benchmarks can run several sidecars in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["LATENCY_BUCKETS", "SidecarMetrics"]

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)
"""Added latency buckets in seconds: sub-millisecond resolution where the target is."""


class SidecarMetrics:
    """The sidecar's core metrics; the observability work adds the rest here."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.registry = reg
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
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.tokens = Counter(
            "haltgate_tokens_total",
            "LLM tokens by type (input, output, cached_input, cache_write, reasoning).",
            ["type"],
            registry=reg,
        )
        self.halts = Counter(
            "haltgate_halts_total",
            "Refusals that are halts or denials, by failure type.",
            ["failure_type"],
            registry=reg,
        )
        self.streams_cut = Counter(
            "haltgate_streams_cut_total",
            "Streams ended by haltgate (budget crossed, halt) or by the upstream (truncated).",
            ["reason"],
            registry=reg,
        )
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
        self.in_flight = Gauge(
            "haltgate_requests_in_flight",
            "Requests being handled now.",
            registry=reg,
        )
        self.fail_open = Counter(
            "haltgate_fail_open_total",
            "Controls that failed and were passed because the policy says fail open.",
            ["control"],
            registry=reg,
        )
