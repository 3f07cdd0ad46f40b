"""The few Kubernetes API calls the operator makes itself (kopf does the watching).

A thin async face over the official ``kubernetes`` client: each call runs in a worker thread
so the event loop (and the webhook) never blocks on the network. Objects come back as plain
dicts with the wire (camelCase) names, the same shape kopf hands to handlers.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

import orjson
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from haltgate.governance.policy import API_GROUP
from haltgate.operator.apierrors import Conflict, Forbidden, NotFound
from haltgate.operator.fastread import FastReader

API_VERSION = "v1alpha1"
POLICY_PLURAL = "governancepolicies"
POOL_PLURAL = "budgetpools"


def _translate(e: ApiException) -> Exception:
    if e.status == 404:
        return NotFound(str(e.reason))
    if e.status == 409:
        return Conflict(str(e.reason))
    if e.status == 403:
        return Forbidden(str(e.reason))
    return e


class Cluster:
    """Calls to the apiserver used by webhooks and reconcilers."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._fast: FastReader | None = None  # made on first use inside the event loop
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.admission = client.AdmissionregistrationV1Api(api)
        self.apps = client.AppsV1Api(api)

    @classmethod
    def from_environment(cls) -> Cluster:
        """In-cluster service account, else ``$KUBECONFIG`` / ``~/.kube/config``."""
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        return cls(client.ApiClient())

    def plain(self, obj: Any) -> dict[str, Any]:
        """A client model as a wire-format dict."""
        out: dict[str, Any] = self._api.sanitize_for_serialization(obj)
        return out

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ApiException as e:
            raise _translate(e) from e

    async def _json(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # Skip the client's model classes: building them holds the GIL for milliseconds per
        # object, which the webhook (same event loop) would feel on every large list.
        resp = await self._call(fn, *args, _preload_content=False, **kwargs)
        return orjson.loads(resp.data)

    def fast(self) -> FastReader:
        if self._fast is None:
            self._fast = FastReader(self._api.configuration)
        return self._fast

    async def close(self) -> None:
        if self._fast is not None:
            await self._fast.close()

    # ----------------------------------------------------------------- reads
    async def namespace_labels(self, namespace: str) -> dict[str, str]:
        ns = await self.fast().get(f"/api/v1/namespaces/{namespace}")
        return dict((ns.get("metadata") or {}).get("labels") or {})

    async def list_policies(self, namespace: str, *, fresh: bool = True) -> list[dict[str, Any]]:
        """The GovernancePolicies of a namespace.

        ``fresh=False`` reads the apiserver's watch cache (resourceVersion=0): no wait, but
        possibly a few milliseconds stale. A consistent list can wait ~100 ms for the cache
        to catch up with etcd while writes flow, which the webhook cannot afford per pod.
        """
        res = await self.fast().get(
            f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{POLICY_PLURAL}",
            None if fresh else {"resourceVersion": "0"},
        )
        return list(res.get("items") or [])

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        res = await self._json(
            self.core.list_namespaced_pod, namespace, label_selector=label_selector
        )
        return list(res.get("items") or [])

    async def read_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        """One haltgate object (GovernancePolicy or BudgetPool), read afresh."""
        obj: dict[str, Any] = await self._json(
            self.custom.get_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            plural,
            name,
        )
        return obj

    async def read_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = await self._json(
            self.apps.read_namespaced_deployment, name, namespace
        )
        return obj

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        sec = await self._call(self.core.read_namespaced_secret, name, namespace)
        data = (sec.data or {}).get(key)
        if data is None:
            raise NotFound(f"secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data)

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any]:
        return self.plain(await self._call(self.core.read_namespaced_secret, name, namespace))

    async def read_config_map(self, namespace: str, name: str) -> dict[str, Any]:
        return self.plain(await self._call(self.core.read_namespaced_config_map, name, namespace))

    # ----------------------------------------------------------------- writes
    async def create_secret(self, namespace: str, body: Mapping[str, Any]) -> None:
        await self._call(self.core.create_namespaced_secret, namespace, dict(body))

    async def replace_secret(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        await self._call(self.core.replace_namespaced_secret, name, namespace, dict(body))

    async def apply_config_map(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create or update a ConfigMap to ``body``; True when something changed."""
        name = body["metadata"]["name"]
        try:
            await self._call(self.core.create_namespaced_config_map, namespace, dict(body))
            return True
        except Conflict:
            pass
        current = await self.read_config_map(namespace, name)
        if (
            current.get("data") == body.get("data")
            and _subset(body["metadata"].get("labels"), current["metadata"].get("labels"))
            and current["metadata"].get("ownerReferences")
            == body["metadata"].get("ownerReferences")
        ):
            return False
        merged = dict(body)
        merged["metadata"] = {
            **body["metadata"],
            "resourceVersion": current["metadata"]["resourceVersion"],
        }
        await self._call(self.core.replace_namespaced_config_map, name, namespace, merged)
        return True

    async def create_event(self, namespace: str, body: Mapping[str, Any]) -> None:
        await self._call(self.core.create_namespaced_event, namespace, dict(body))

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        """Merge ``status`` into a haltgate object's status subresource."""
        await self._call(
            self.custom.patch_namespaced_custom_object_status,
            API_GROUP,
            API_VERSION,
            namespace,
            plural,
            name,
            {"status": dict(status)},
        )

    async def patch_pod_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        await self._call(
            self.core.patch_namespaced_pod,
            name,
            namespace,
            {"metadata": {"annotations": dict(annotations)}},
        )

    async def patch_template_annotations(
        self, kind: str, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """Merge ``annotations`` into a Deployment/StatefulSet/DaemonSet's pod template
        (None removes a key): a rollout."""
        fn = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "StatefulSet": self.apps.patch_namespaced_stateful_set,
            "DaemonSet": self.apps.patch_namespaced_daemon_set,
        }[kind]
        await self._call(
            fn,
            name,
            namespace,
            {"spec": {"template": {"metadata": {"annotations": dict(annotations)}}}},
        )

    async def apply_webhook_configuration(self, kind: str, body: Mapping[str, Any]) -> None:
        """Create or replace a Mutating/ValidatingWebhookConfiguration's webhooks."""
        create: Any
        read: Any
        replace: Any
        if kind == "mutating":
            create, read, replace = (
                self.admission.create_mutating_webhook_configuration,
                self.admission.read_mutating_webhook_configuration,
                self.admission.replace_mutating_webhook_configuration,
            )
        else:
            create, read, replace = (
                self.admission.create_validating_webhook_configuration,
                self.admission.read_validating_webhook_configuration,
                self.admission.replace_validating_webhook_configuration,
            )
        name = body["metadata"]["name"]
        for _ in range(5):  # bounded: optimistic concurrency with another replica
            try:
                await self._call(create, dict(body))
                return
            except Conflict:
                pass
            current = self.plain(await self._call(read, name))
            merged = {
                **body,
                "metadata": {
                    **body["metadata"],
                    "resourceVersion": current["metadata"]["resourceVersion"],
                },
            }
            try:
                await self._call(replace, name, merged)
                return
            except (Conflict, NotFound):
                continue
        raise Conflict(f"webhook configuration {name}: kept changing, gave up after 5 tries")


def _subset(want: Mapping[str, Any] | None, have: Mapping[str, Any] | None) -> bool:
    want, have = want or {}, have or {}
    return all(have.get(k) == v for k, v in want.items())
