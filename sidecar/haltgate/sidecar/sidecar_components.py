"""The sidecar's working parts, built from its settings and the policy at start: the upstream
HTTP client (:mod:`.upstream_pool`), the TLS-inspection CA, the budget Governor, the OPA
evaluator and the pool stage."""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any

from prometheus_client import CollectorRegistry

from haltgate.governance.governor import Governor
from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.pricing import PriceTable
from haltgate.governance.request import AgentIdentity
from haltgate.sidecar.startup import SidecarSettings, StartupError, opening
from haltgate.sidecar.upstream_pool import UpstreamClient

__all__ = ["make_governor", "make_minter", "make_opa", "make_pool", "make_upstream_client"]

log = logging.getLogger("haltgate.sidecar")


def make_upstream_client(settings: SidecarSettings) -> UpstreamClient:
    """The one keep-alive client to every upstream (trusting ``upstream_ca_file`` if set,
    the system's trust store otherwise), at most ``upstream_connections`` in use at once."""
    with opening(
        "upstream_ca_file", "cannot load the upstream CA bundle", settings.upstream_ca_file
    ):
        ssl_context = (
            ssl.create_default_context()
            if settings.upstream_ca_file is None
            else ssl.create_default_context(cafile=str(settings.upstream_ca_file))
        )
    return UpstreamClient(
        limit=settings.upstream_connections, ssl_context=ssl_context, keepalive=30.0
    )


def make_minter(settings: SidecarSettings) -> Any | None:
    """The leaf minter of the haltgate CA in ``ca_dir`` (None: nothing is inspected)."""
    if settings.ca_dir is None:
        return None
    from haltgate.sidecar.tlsmint import (
        CA_CERT_FILE,
        CA_KEY_FILE,
        CertificateAuthority,
        LeafMinter,
        TLSMintError,
    )

    try:
        ca = CertificateAuthority.load(
            settings.ca_dir / CA_CERT_FILE, settings.ca_dir / CA_KEY_FILE
        )
    except TLSMintError as e:
        raise StartupError("ca_dir", str(e)) from e
    return LeafMinter(ca)


def make_governor(
    settings: SidecarSettings, spec: GovernancePolicySpec, prices: PriceTable | None
) -> Governor:
    """The budget engine's Governor, its state persisted in the state directory."""
    state = settings.state_dir / "budget-state.json" if settings.state_dir is not None else None
    if state is not None:
        state.parent.mkdir(parents=True, exist_ok=True)
    return Governor.for_policy(spec, state, now=time.time(), prices=prices)


async def make_opa(settings: SidecarSettings, spec: GovernancePolicySpec) -> Any | None:
    """The OPA evaluator of ``spec.opa`` (None: the policy has no Rego)."""
    if spec.opa is None:
        return None
    from haltgate.governance.opa import OPAEvaluator, resolve_rego

    opa = OPAEvaluator(spec.opa, resolve_rego(spec.opa, settings.rego_dir), url=settings.opa_url)
    try:
        await opa.start()
    except Exception as e:  # OPA may come up after us: decisions fail closed meanwhile
        log.warning("OPA not ready at start (%s); decisions follow failMode", e)
    return opa


async def make_pool(
    settings: SidecarSettings,
    spec: GovernancePolicySpec,
    agent: AgentIdentity,
    governor: Governor | None,
    run_id: str,
    registry: CollectorRegistry,
) -> Any:
    """The pool stage: cascade checks always; shared accounting if the policy names a
    pool (read at start: changing ``spec.pool`` needs a restart)."""
    from haltgate.governance.policy_base import FailMode
    from haltgate.governance.pool.client import PoolClient, PoolMetrics, PoolSettings
    from haltgate.governance.pool.store import pool_key
    from haltgate.sidecar.pool import PoolStage

    me = f"{agent.namespace or 'default'}/{agent.workload or agent.pod or 'agent'}"
    name = spec.pool
    prices = getattr(governor.engine, "prices", None) if governor else None
    common: dict[str, Any] = {
        "me": me,
        "prices": prices,
        "governor": governor,
        "default_max_output_tokens": settings.pipeline.default_max_output_tokens,
    }
    if name is None:
        return PoolStage(client=None, **common)
    if not settings.pool_dsn:
        log.error(
            "policy names pool %s but no pool database is configured "
            "(--pool-dsn): every call is refused",
            name,
        )
        return PoolStage(
            client=None,
            unconfigured=f"the policy draws from pool {name} but the sidecar has no pool database",
            **common,
        )
    client = PoolClient(
        PoolSettings(
            dsn=settings.pool_dsn,
            pool=pool_key(agent.namespace or "default", name),
            holder=f"{me}/{agent.pod or run_id}",
            fail_mode=FailMode(settings.pool_fail_mode),
        ),
        PoolMetrics(registry),
    )
    await client.start()
    return PoolStage(client=client, **common)
