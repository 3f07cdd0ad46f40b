"""Async GETs for the admission hot path, straight over aiohttp.

The official client is synchronous (a worker thread per call) and validates arguments on
every call; on a busy node those hops cost more than the apiserver's answer. The webhook's
two reads (the namespace, the policies from the watch cache) go through this instead, with
the very same credentials as the official client (its ``Configuration``: server, CA, client
certificate or bearer token, refreshed when the token file rotates).
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import orjson
from kubernetes import client

from haltgate.operator.apierrors import ApiError, NotFound


class FastReader:
    """GET JSON from the apiserver on one pooled aiohttp session."""

    def __init__(self, configuration: client.Configuration, *, timeout: float = 5.0) -> None:
        self._cfg = configuration
        ctx = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
        if configuration.cert_file and configuration.key_file:
            ctx.load_cert_chain(configuration.cert_file, configuration.key_file)
        if not configuration.verify_ssl:  # only ever set by an explicit kubeconfig choice
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self._ssl = ctx
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self._cfg.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            headers["Authorization"] = token
        return headers

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=self._cfg.host,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=16),
            )
        async with self._session.get(path, params=params, headers=self._headers()) as resp:
            body = await resp.read()
            if resp.status == 404:
                raise NotFound(path)
            if resp.status >= 400:
                raise ApiError(resp.status, body[:300].decode("utf-8", "replace"))
            return orjson.loads(body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
