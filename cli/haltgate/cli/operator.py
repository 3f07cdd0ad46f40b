"""``haltgate operator``: run the Kubernetes operator (webhooks, reconciliation, halts)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import click
import yaml


@click.command(name="operator")
@click.option(
    "--namespace",
    envvar="HALTGATE_NAMESPACE",
    default="haltgate-system",
    show_default=True,
    help="The operator's own namespace (never injected).",
)
@click.option(
    "--webhook-host",
    envvar="HALTGATE_WEBHOOK_HOST",
    default="0.0.0.0",
    show_default=True,
    help="Address the HTTPS webhook server binds.",
)
@click.option(
    "--webhook-port",
    envvar="HALTGATE_WEBHOOK_PORT",
    type=int,
    default=9443,
    show_default=True,
    help="Port the HTTPS webhook server binds.",
)
@click.option(
    "--webhook-url",
    envvar="HALTGATE_WEBHOOK_URL",
    default=None,
    help="Base https:// URL the apiserver calls (out-of-cluster operators); "
    "default: the Service --webhook-service.",
)
@click.option(
    "--webhook-service",
    envvar="HALTGATE_WEBHOOK_SERVICE",
    default="haltgate-webhook",
    show_default=True,
    help="Service in --namespace that fronts the webhook server.",
)
@click.option(
    "--tls-dir",
    envvar="HALTGATE_TLS_DIR",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="tls.crt/tls.key/ca.crt from cert-manager; default: self-managed "
    "certificates kept in a Secret.",
)
@click.option(
    "--helm-release",
    envvar="HALTGATE_HELM_RELEASE",
    default=None,
    help="Helm release the operator belongs to: the webhook configurations it "
    "writes carry Helm's ownership metadata, so `helm upgrade` to cert-manager "
    "mode takes them over in place (no window without a webhook).",
)
@click.option(
    "--manage-webhook-configurations/--no-manage-webhook-configurations",
    default=True,
    show_default=True,
    help="Create/update the webhook configurations and their caBundle.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/tmp/haltgate-operator"),
    show_default=True,
    help="Scratch directory (self-managed certificate files).",
)
@click.option(
    "--injection-config",
    envvar="HALTGATE_INJECTION_CONFIG",
    default=None,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="YAML of injection settings (camelCase keys: image, proxyUID, ...).",
)
@click.option(
    "--injection-template",
    envvar="HALTGATE_INJECTION_TEMPLATE",
    default=None,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Injection template YAML (default: the one shipped with haltgate).",
)
@click.option(
    "--health-port",
    type=int,
    default=8080,
    show_default=True,
    help="Liveness endpoint port (/healthz).",
)
@click.option(
    "--metrics-port", type=int, default=9090, show_default=True, help="Prometheus metrics port."
)
@click.option(
    "--peering",
    default=None,
    help="kopf peering object name for HA (needs the KopfPeering CRDs); default: standalone.",
)
@click.option(
    "--priority", type=int, default=0, show_default=True, help="Peering priority of this replica."
)
@click.option(
    "--halt-resync",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds between halt-delivery retries.",
)
@click.option(
    "--status-resync",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds between policy status refreshes (matched workloads).",
)
@click.option(
    "--pool-dsn",
    envvar="HALTGATE_POOL_DSN",
    default=None,
    help="BudgetPool database URI (a haltgate_pool_admin role): pool limits, halts "
    "and spend in status. Unset: pools are reported from the cluster only.",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def operator(
    namespace: str,
    webhook_host: str,
    webhook_port: int,
    webhook_url: str | None,
    webhook_service: str,
    tls_dir: Path | None,
    helm_release: str | None,
    manage_webhook_configurations: bool,
    work_dir: Path,
    injection_config: Path | None,
    injection_template: Path | None,
    health_port: int,
    metrics_port: int,
    peering: str | None,
    priority: int,
    halt_resync: float,
    status_resync: float,
    pool_dsn: str | None,
    verbose: bool,
) -> None:
    """Run the Kubernetes operator: admission webhooks (inject agent pods, validate
    policies), GovernancePolicy/BudgetPool reconciliation and external halts.

    Exits 2 on bad settings (with the field at fault), 1 if the operator stops on an error.
    """
    import kopf

    from haltgate.operator import injection, run, settings
    from haltgate.operator.injection_template import InjectionTemplate, default_template_path

    try:
        raw: dict[str, Any] = {}
        if injection_config is not None:
            loaded = yaml.safe_load(injection_config.read_text(encoding="utf-8")) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{injection_config}: must be a mapping")
            raw = loaded
        raw.setdefault("operatorNamespace", namespace)
        opts = settings.OperatorSettings(
            namespace=namespace,
            webhook=settings.WebhookSettings(
                listen_host=webhook_host,
                port=webhook_port,
                url=webhook_url,
                service_name=webhook_service,
                tls_dir=tls_dir,
                work_dir=work_dir,
                manage_configurations=manage_webhook_configurations,
                helm_release=helm_release or None,
            ),
            injection=injection.InjectionConfig.from_mapping(raw),
            template_path=injection_template or default_template_path(),
            health_port=health_port,
            metrics_port=metrics_port,
            peering=peering,
            priority=priority,
            halt_resync_seconds=halt_resync,
            status_resync_seconds=status_resync,
            pool_dsn=pool_dsn,
        )
        InjectionTemplate.load(opts.template_path)
    except (ValueError, TypeError, OSError) as e:
        click.echo(f"haltgate operator: {e}", err=True)
        raise SystemExit(2) from e

    kopf.configure(debug=verbose, verbose=verbose)
    logging.getLogger("haltgate").setLevel(logging.DEBUG if verbose else logging.INFO)
    try:
        asyncio.run(run.run(opts))
    except KeyboardInterrupt:
        pass
