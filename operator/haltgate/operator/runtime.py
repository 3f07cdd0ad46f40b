"""What every handler of the operator shares: settings, API access, template, metrics."""

from __future__ import annotations

from dataclasses import dataclass

from haltgate.operator import cluster, injection_template, metrics, settings


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: settings.OperatorSettings
    cluster: cluster.Cluster
    template: injection_template.InjectionTemplate
    metrics: metrics.OperatorMetrics
