"""Kubernetes Events the operator posts on objects (``kubectl describe`` shows them).

Posted directly through the API rather than through kopf's logger: kopf does not post
events from event-watching handlers, nor from loops outside its handlers. Only transitions
are posted (a condition turning False, a halt delivered or lifted), never every resync.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, Literal

from haltgate.operator import cluster

COMPONENT = "haltgate-operator"
_MAX_MESSAGE = 1024
log = logging.getLogger("haltgate.operator.events")


def event_body(
    obj: Mapping[str, Any],
    type_: Literal["Normal", "Warning"],
    reason: str,
    message: str,
    now: dt.datetime,
) -> dict[str, Any]:
    """A core/v1 Event about ``obj`` (pure)."""
    meta = obj.get("metadata") or {}
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{meta.get('name', 'object')}.",
            "namespace": meta.get("namespace"),
        },
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:_MAX_MESSAGE],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
    }


async def post(
    api: cluster.Cluster,
    obj: Mapping[str, Any],
    type_: Literal["Normal", "Warning"],
    reason: str,
    message: str,
) -> None:
    """Post an event; failures are logged, never raised (events are best effort)."""
    body = event_body(obj, type_, reason, message, dt.datetime.now(dt.UTC))
    try:
        await api.create_event(body["metadata"]["namespace"], body)
    except Exception as e:
        log.warning(
            "cannot post event %s on %s: %s", reason, (obj.get("metadata") or {}).get("name"), e
        )
