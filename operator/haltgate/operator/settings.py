"""Settings of ``haltgate operator``, grouped and validated at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from haltgate.operator.injection import InjectionConfig
from haltgate.operator.injection_template import default_template_path


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    listen_host: str = "0.0.0.0"
    """Address the HTTPS webhook server binds."""
    port: int = 9443
    """Port the HTTPS webhook server binds."""
    url: str | None = None
    """Base URL the apiserver uses (``url:`` client config), e.g. https://127.0.0.1:9443.
    Unset: the Service ``service_name`` in the operator's namespace is used."""
    service_name: str = "haltgate-webhook"
    service_port: int = 443
    tls_dir: Path | None = None
    """Directory with tls.crt/tls.key/ca.crt from cert-manager. Unset: the operator makes
    and renews its own (kept in the Secret ``tls_secret`` so all replicas share one CA)."""
    tls_secret: str = "haltgate-webhook-tls"
    work_dir: Path = Path("/tmp/haltgate-operator")
    """Where self-managed certificate files are written for the server to load."""
    manage_configurations: bool = True
    """Create/update the Mutating/ValidatingWebhookConfiguration (with caBundle). Off when
    the chart owns them and cert-manager's CA injector fills caBundle."""
    helm_release: str | None = None
    """Helm release of the operator (the chart sets it): the configurations it writes carry
    Helm's ownership label and annotations, so switching the release to cert-manager
    mode updates them in place instead of failing on objects Helm does not own."""

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"webhook.port: must be in 1..65535, got {self.port}")
        if self.url is not None and not self.url.startswith("https://"):
            raise ValueError(
                f"webhook.url: the apiserver only calls https:// URLs, got {self.url!r}"
            )


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    namespace: str = "haltgate-system"
    """The operator's own namespace: never injected, home of its Secrets."""
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    injection: InjectionConfig = field(default_factory=InjectionConfig)
    template_path: Path = field(default_factory=default_template_path)
    health_host: str = "0.0.0.0"
    health_port: int = 8080
    """kopf liveness endpoint: http://HOST:PORT/healthz."""
    metrics_port: int = 9090
    """Prometheus metrics of the operator, on their own port."""
    peering: str | None = None
    """kopf peering object name (HA: one active reconciler, every replica serves webhooks).
    None: standalone."""
    priority: int = 0
    halt_resync_seconds: float = 5.0
    """How often pending halt/lift deliveries are retried and new pods of a halted policy
    are halted."""
    status_resync_seconds: float = 30.0
    """How often policy status (matched workloads) is refreshed."""
    admin_timeout_seconds: float = 3.0
    """Timeout of one call to a sidecar's admin API."""
    pool_dsn: str | None = None
    """PostgreSQL URI of the BudgetPool database (a ``haltgate_pool_admin`` role). Set: each
    BudgetPool's limits are written there, its halt annotation halts/lifts the pool for
    every member, and its status shows the database's state and spend. None: status only."""

    def __post_init__(self) -> None:
        if self.injection.operator_namespace != self.namespace:
            raise ValueError(
                "injection.operatorNamespace must equal the operator's namespace "
                f"({self.injection.operator_namespace!r} != {self.namespace!r})"
            )
        for name, port in (("healthPort", self.health_port), ("metricsPort", self.metrics_port)):
            if not 1 <= port <= 65535:
                raise ValueError(f"{name}: must be in 1..65535, got {port}")
        if len({self.health_port, self.metrics_port, self.webhook.port}) != 3:
            raise ValueError("webhook, health and metrics ports must be distinct")
        if self.halt_resync_seconds <= 0 or self.status_resync_seconds <= 0:
            raise ValueError("resync intervals must be > 0")
