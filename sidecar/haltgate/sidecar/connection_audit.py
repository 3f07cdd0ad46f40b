"""Connections in the audit log: tunnels (opened, closed with byte counts) and refused
connections, and the transparent listener's gate that halts passthrough TLS."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from haltgate.governance.audit import AuditError, AuditRecord, AuditSink
from haltgate.governance.audit.redact import AuditScrubber
from haltgate.governance.errors import DeniedError, HaltgateError
from haltgate.governance.policy_base import FailureType, PayloadCapture
from haltgate.governance.request import AgentIdentity
from haltgate.sidecar.controls import Controls
from haltgate.sidecar.pipeline import Pipeline

__all__ = ["ConnectionAudit", "ConnectionSource", "halt_error", "record_connection"]

log = logging.getLogger("haltgate.sidecar")


class ConnectionSource(Protocol):
    """What connection auditing reads of the running sidecar."""

    pipeline: Pipeline | None
    audit: AuditSink
    controls: Controls

    def agent_identity(self) -> AgentIdentity: ...


async def record_connection(
    source: ConnectionSource,
    decision_id: str,
    host: str,
    port: int,
    decision: str,
    err: HaltgateError | None,
    *,
    bytes_up: int | None = None,
    bytes_down: int | None = None,
    seconds: float | None = None,
) -> None:
    """Audit a tunnel (opened, closed with byte counts) or a refused connection."""
    agent = source.agent_identity()
    payload = (
        None
        if bytes_up is None
        else {"bytes_up": bytes_up, "bytes_down": bytes_down, "seconds": seconds}
    )
    # The host is the agent's to choose (a key can hide in a DNS label): scrubbed.
    scrub = AuditScrubber(redact=source.controls.payload is not PayloadCapture.FULL)
    record = AuditRecord(
        decision_id=decision_id,
        time=time.time(),
        phase="connection",
        namespace=agent.namespace,
        workload=agent.workload,
        pod=agent.pod,
        run_id=agent.run_id,
        kind="connection",
        target=scrub.target(f"CONNECT {host}:{port}" if host else "CONNECT (unparsed)"),
        decision=decision,
        failure_type=err.failure_type.value if err and err.failure_type else None,
        code=err.code if err else None,
        message=scrub.optional(err.message if err else None),
        latency_ms=None if seconds is None else seconds * 1000,
        payload=payload,
    )
    try:
        await source.audit.outcome(record)
    except AuditError as e:
        log.error("connection record %s not written: %s", decision_id, e)


class ConnectionAudit:
    """The transparent listener's gate for passthrough TLS: halts refuse, tunnels audited."""

    def __init__(self, sidecar: ConnectionSource) -> None:
        self._sidecar = sidecar

    async def opened(self, event: Any) -> bool:
        sc = self._sidecar
        assert sc.pipeline is not None
        halted = sc.pipeline.budget.halted(time.time())
        err = None if halted.allowed else halt_error(halted)
        if err is None and sc.pipeline.pool is not None:
            err = sc.pipeline.pool.refusal()  # a halted pool refuses tunnels too
        await record_connection(
            sc,
            event.connection_id,
            event.upstream.host,
            event.upstream.port,
            "allow" if err is None else "deny",
            err,
        )
        sc.pipeline.metrics.requests.labels(
            "connection", "allow" if err is None else "deny", err.code if err else ""
        ).inc()
        return err is None

    async def closed(self, event: Any) -> None:
        await record_connection(
            self._sidecar,
            event.connection_id,
            event.upstream.host,
            event.upstream.port,
            "allow",
            None,
            bytes_up=event.bytes_up,
            bytes_down=event.bytes_down,
            seconds=event.duration_seconds,
        )

    async def refused(self, code: str, detail: str, host: str, port: int) -> None:
        sc = self._sidecar
        assert sc.pipeline is not None
        err = DeniedError(detail, code=code, failure_type=FailureType.SAFETY)
        await record_connection(sc, sc.pipeline.identify().decision_id, host, port, "deny", err)
        sc.pipeline.metrics.requests.labels("connection", "deny", code).inc()


def halt_error(verdict: Any) -> HaltgateError:
    return DeniedError(
        verdict.message or "the run is halted",
        code=verdict.code or "halted",
        failure_type=verdict.failure_type or FailureType.EXTERNAL,
    )
