"""The webhook server's TLS at start-up and after: the serving certificate (cert-manager's
files, or a self-managed CA and leaf in a Secret shared by the replicas), the HTTPS server,
the webhook configurations carrying the CA bundle, and renewal before expiry."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from haltgate.operator import apierrors, certs, policies, webhookconfig, webhooks
from haltgate.operator.runtime import Runtime

logger = logging.getLogger("haltgate.operator")
_TLS_CHECK_SECONDS = 3600.0


def _secret_to_tls(secret: Mapping[str, Any]) -> certs.WebhookTLS | None:
    data = secret.get("data") or {}
    try:
        raw = {k: base64.b64decode(data[k]) for k in ("ca.crt", "ca.key", "tls.crt", "tls.key")}
    except KeyError:
        return None
    # tls.crt holds leaf + CA: keep only the first certificate as the leaf.
    leaf_pem = (
        raw["tls.crt"].split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    )
    return certs.WebhookTLS(
        certs.KeyPair(raw["ca.crt"], raw["ca.key"]), certs.KeyPair(leaf_pem, raw["tls.key"])
    )


def _tls_to_secret(name: str, tls: certs.WebhookTLS) -> dict[str, Any]:
    def b64(x: bytes) -> str:
        return base64.b64encode(x).decode()

    return {
        "metadata": {"name": name, "labels": dict(policies.MANAGED_LABELS)},
        "type": "Opaque",
        "data": {
            "ca.crt": b64(tls.ca.cert_pem),
            "ca.key": b64(tls.ca.key_pem),
            "tls.crt": b64(tls.leaf.cert_pem + tls.ca.cert_pem),
            "tls.key": b64(tls.leaf.key_pem),
        },
    }


async def ensure_self_managed_tls(rt: Runtime, hosts: list[str]) -> certs.WebhookTLS:
    """Load the shared webhook TLS Secret, renewing or creating it when needed."""
    ns, name = rt.settings.namespace, rt.settings.webhook.tls_secret
    for _ in range(5):  # bounded: another replica may be writing the same Secret
        current: certs.WebhookTLS | None = None
        version: str | None = None
        try:
            secret = await rt.cluster.read_secret(ns, name)
            current = _secret_to_tls(secret)
            version = secret["metadata"]["resourceVersion"]
        except apierrors.NotFound:
            pass
        tls, changed = certs.ensure_webhook_tls(current, hosts, now=dt.datetime.now(dt.UTC))
        if not changed:
            return tls
        body = _tls_to_secret(name, tls)
        try:
            if version is None:
                await rt.cluster.create_secret(ns, body)
            else:
                body["metadata"]["resourceVersion"] = version
                await rt.cluster.replace_secret(ns, name, body)
            logger.info(
                "webhook serving certificate %s (valid until %s)",
                "created" if version is None else "renewed",
                tls.leaf.not_after,
            )
            return tls
        except apierrors.Conflict:
            continue
    raise RuntimeError(f"webhook TLS Secret {ns}/{name}: kept changing, gave up")


@dataclass(slots=True)
class WebhookTLSFiles:
    """The serving certificate files and the live server context that loaded them."""

    certfile: Path
    keyfile: Path
    ca_bundle: bytes
    context: ssl.SSLContext
    loaded: tuple[float, float] = (0.0, 0.0)

    def reload_if_changed(self) -> bool:
        """Load changed files into the live context (new handshakes use them at once)."""
        stamp = (self.certfile.stat().st_mtime, self.keyfile.stat().st_mtime)
        if stamp == self.loaded:
            return False
        self.context.load_cert_chain(str(self.certfile), str(self.keyfile))
        self.loaded = stamp
        return True


async def prepare_tls(rt: Runtime) -> WebhookTLSFiles:
    """Serving certificate: cert-manager's files, or self-managed ones (shared Secret)."""
    wh = rt.settings.webhook
    if wh.tls_dir is not None:
        certfile, keyfile, cafile = (
            wh.tls_dir / "tls.crt",
            wh.tls_dir / "tls.key",
            wh.tls_dir / "ca.crt",
        )
        ca_bundle = cafile.read_bytes()
    else:
        hosts = webhookconfig.hosts_for(
            wh.url, None if wh.url else wh.service_name, rt.settings.namespace
        )
        tls = await ensure_self_managed_tls(rt, hosts)
        certfile, keyfile, _ = tls.write(wh.work_dir / "tls")
        ca_bundle = tls.ca.cert_pem
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    files = WebhookTLSFiles(certfile, keyfile, ca_bundle, ctx)
    files.reload_if_changed()
    return files


async def start_webhook_server(rt: Runtime, tls: WebhookTLSFiles) -> web.AppRunner:
    wh = rt.settings.webhook
    # No access log: one line per pod creation is noise; the metrics count every review.
    runner = web.AppRunner(webhooks.create_app(rt), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, wh.listen_host, wh.port, ssl_context=tls.context, reuse_address=True)
    await site.start()
    logger.info("webhook server listening on https://%s:%d", wh.listen_host, wh.port)
    return runner


async def apply_webhook_configurations(rt: Runtime, ca_bundle: bytes) -> None:
    wh = rt.settings.webhook
    endpoint = webhookconfig.Endpoint(
        ca_bundle=ca_bundle,
        url=wh.url,
        service_name=None if wh.url else wh.service_name,
        service_namespace=rt.settings.namespace,
        service_port=wh.service_port,
    )

    def owned(config: dict[str, Any]) -> dict[str, Any]:
        return webhookconfig.helm_owned(config, wh.helm_release, rt.settings.namespace)

    await rt.cluster.apply_webhook_configuration(
        "mutating", owned(webhookconfig.mutating_configuration(endpoint, rt.settings.injection))
    )
    await rt.cluster.apply_webhook_configuration(
        "validating", owned(webhookconfig.validating_configuration(endpoint, rt.settings.injection))
    )
    logger.info(
        "webhook configurations %s and %s applied",
        webhookconfig.MUTATING_NAME,
        webhookconfig.VALIDATING_NAME,
    )


async def renew_forever(rt: Runtime, tls: WebhookTLSFiles) -> None:
    """Keep the serving certificate fresh: renew the self-managed leaf before expiry, or
    pick up the files cert-manager rotates; the live server context reloads them."""
    wh = rt.settings.webhook
    hosts = webhookconfig.hosts_for(
        wh.url, None if wh.url else wh.service_name, rt.settings.namespace
    )
    interval = _TLS_CHECK_SECONDS if wh.tls_dir is None else 60.0
    while True:
        await asyncio.sleep(interval)
        try:
            if wh.tls_dir is None:
                (await ensure_self_managed_tls(rt, hosts)).write(wh.work_dir / "tls")
            if tls.reload_if_changed():
                logger.info("webhook serving certificate reloaded")
        except Exception:  # keep serving the current certificate; try again later
            logger.exception("webhook certificate renewal failed")
