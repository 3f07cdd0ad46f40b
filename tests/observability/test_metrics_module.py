"""SidecarMetrics without a server: identity labels, bounded models, halts counted once."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from haltgate.governance.governor import Governor
from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.policy_base import FailureType
from haltgate.sidecar.metrics import MAX_MODELS, OTHER_MODEL, SidecarMetrics

NOW = 1_800_000_000.0


def _governor() -> Governor:
    spec = GovernancePolicySpec.model_validate(
        {
            "selector": {"matchLabels": {"app": "a"}},
            "budgets": {"calls": {"limit": 8}},
            "pricing": {"unknownModel": "default", "default": {"input": 1.0, "output": 2.0}},
        }
    )
    return Governor.for_policy(spec, now=NOW)


def _exposed(m: SidecarMetrics) -> str:
    return generate_latest(m.exposed).decode()


def test_identity_labels_are_added_at_scrape_time_and_empty_ones_left_out() -> None:
    m = SidecarMetrics(CollectorRegistry(), namespace="team-a", workload="agent")
    m.requests.labels("llm", "allow", "").inc()
    text = _exposed(m)
    assert (
        'haltgate_requests_total{code="",decision="allow",kind="llm",'
        'namespace="team-a",workload="agent"} 1.0'
    ) in text
    assert "policy=" not in text
    assert "haltgate_policy_last_reload_ok{" in text and "reload_ok{namespace" in text
    assert 'haltgate_policy_last_reload_ok{namespace="team-a",workload="agent"} 1.0' in text
    m.set_identity(policy="p1")
    assert 'policy="p1"' in _exposed(m)
    # The registry itself stays free of them: hot-path children bind per-call labels only.
    assert "namespace=" not in generate_latest(m.registry).decode()


def test_model_label_is_bounded() -> None:
    m = SidecarMetrics(CollectorRegistry())
    labels = {m.model_label(f"model-{i}") for i in range(MAX_MODELS + 10)}
    assert len(labels) == MAX_MODELS + 1 and OTHER_MODEL in labels
    assert m.model_label("model-0") == "model-0"
    assert m.model_label(None) == "_none"
    for i in range(10 * MAX_MODELS):  # the lookup cache does not grow without bound
        m.model_label(f"agent-chosen-{i}")
    assert len(m._models) <= 4 * MAX_MODELS


def test_budget_ratio_and_halt_state_come_from_the_governor_at_scrape() -> None:
    m = SidecarMetrics(CollectorRegistry())
    gov = _governor()
    m.watch_governor(lambda: gov)
    for i in range(4):
        assert gov.reserve(f"c{i}", NOW + i, kind="http", host="api").allowed
    text = _exposed(m)
    assert 'haltgate_budget_used_ratio{dimension="calls"} 0.5' in text
    assert 'haltgate_budget_limit{dimension="calls"} 8.0' in text
    assert 'haltgate_halted{code="",failure=""} 0.0' in text
    gov.halt(NOW + 5, FailureType.EXTERNAL, "pool_halted", "pool halted")
    m.sync_halt(gov)  # the refusal path
    text = _exposed(m)  # and the scrape: the same halt is counted once
    assert 'haltgate_halts_total{code="pool_halted",failure="EXTERNAL"} 1.0' in text
    assert 'haltgate_halted{code="pool_halted",failure="EXTERNAL"} 1.0' in text
    gov.reset(NOW + 6, "test")
    m.sync_halt(gov)
    gov.halt(NOW + 7, FailureType.EXTERNAL, "pool_halted", "pool halted again")
    _exposed(m)
    assert 'haltgate_halts_total{code="pool_halted",failure="EXTERNAL"} 2.0' in _exposed(m)


def test_transparent_outcomes_are_exported_as_a_counter() -> None:
    m = SidecarMetrics(CollectorRegistry())
    outcomes = {"http": 3, "refused_not_allowed": 1}
    m.watch_transparent(lambda: outcomes)
    text = _exposed(m)
    assert "# TYPE haltgate_transparent_connections_total counter" in text
    assert 'haltgate_transparent_connections_total{outcome="http"} 3.0' in text


def test_a_failing_governor_does_not_break_the_scrape() -> None:
    def unreadable() -> Governor:
        raise OSError("state unreadable")

    m = SidecarMetrics(CollectorRegistry())
    m.watch_governor(unreadable)
    m.requests.labels("llm", "allow", "").inc()
    assert "haltgate_requests_total" in _exposed(m)


def test_every_metric_is_in_the_reference() -> None:
    from pathlib import Path

    from haltgate.governance.audit.metrics import AuditMetrics
    from haltgate.governance.pool.client import PoolMetrics
    from haltgate.operator.metrics import OperatorMetrics

    doc = (Path(__file__).resolve().parents[2] / "docs" / "observability.md").read_text()
    m = SidecarMetrics(CollectorRegistry())
    m.watch_governor(_governor)
    m.watch_transparent(lambda: {"http": 1})
    AuditMetrics(m.registry)
    PoolMetrics(m.registry)
    families = list(m.registry.collect()) + list(OperatorMetrics.create().registry.collect())
    names = set()
    for family in families:
        suffix = "_total" if family.type == "counter" else ""
        names.add(family.name + suffix)
    assert len(names) > 30
    missing = sorted(n for n in names if f"`{n}`" not in doc)
    assert not missing, f"not in docs/observability.md: {missing}"
