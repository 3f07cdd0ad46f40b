"""The OPA evaluator: the policy's Rego loaded into, and evaluated by, a local OPA server.

The sidecar asks a local OPA server (a container of the same pod, on loopback) one question
per governed call: may this call go ahead? The question is the input document
(:mod:`haltgate.governance.opa_input`); the answer is parsed into a decision by
:mod:`haltgate.governance.opa_decision`. This module resolves the Rego source, uploads it,
keeps it loaded, caches decisions and turns OPA's failures into typed decisions.

Library choice: policy management (upload with OPA's compile errors, health, presence
checks) goes through ``opa-python-client``'s ``AsyncOpaClient``. Decisions, the hot path,
are posted with aiohttp directly. Not for speed (``bench/policy.py`` measures the client's
``query_rule`` within a few percent of this path) but for semantics: ``query_rule`` raises
on 4xx/5xx without OPA's error body (we put its code in the audit trail), retries with
sleeps between attempts (wrong inside a 50 ms budget, and a retry must not outlive the
timeout), serializes the input itself (we already hold the canonical bytes, which are also
the cache key), and has one timeout for everything (decisions need their own, per policy).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import orjson
from opa_client import AsyncOpaClient
from opa_client.errors import RegoParseError

from haltgate.governance.opa_decision import (
    CODE_OPA_DENIED,
    CODE_OPA_ERROR,
    CODE_OPA_TIMEOUT,
    CODE_OPA_UNAVAILABLE,
    CODE_OPA_UNDEFINED,
    OPADecision,
    cut_reason,
    malformed_decision,
    parse_decision,
)
from haltgate.governance.policy_base import FailMode, FailureType
from haltgate.governance.policy_checks import OPA

__all__ = [
    "DEFAULT_OPA_URL",
    "DEFAULT_REGO_DIR",
    "OPAEvaluator",
    "OPAPolicyError",
    "resolve_rego",
]

log = logging.getLogger(__name__)

DEFAULT_OPA_URL: Final = "http://127.0.0.1:8181"
"""Where the injected OPA container listens (loopback inside the pod)."""

DEFAULT_REGO_DIR: Final = "/etc/haltgate/opa"
"""Where the ConfigMap named by ``spec.opa.configMapRef`` is mounted into the sidecar."""

DEFAULT_POLICY_ID: Final = "haltgate/policy"
"""Id of the module in OPA (``PUT /v1/policies/<id>``): one policy per sidecar's OPA."""


# --------------------------------------------------------------------------- rego source


class OPAPolicyError(Exception):
    """The Rego could not be loaded: it does not compile, or its source cannot be read.

    ``errors`` are OPA's compile errors (``{"code", "message", "location": {"row",
    "col"}}``) when OPA rejected the module.
    """

    code = "opa_policy_invalid"

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.errors = tuple(errors)


def resolve_rego(settings: OPA, rego_dir: str | Path = DEFAULT_REGO_DIR) -> str:
    """The Rego module text of ``spec.opa``: inline, or the mounted ConfigMap key's file."""
    if settings.rego is not None:
        return settings.rego
    if settings.config_map_ref is None:
        raise OPAPolicyError("spec.opa sets neither rego nor configMapRef")
    path = Path(rego_dir) / settings.config_map_ref.key
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise OPAPolicyError(
            f"cannot read Rego from ConfigMap "
            f"{settings.config_map_ref.name!r} at {path}: {e.strerror}"
        ) from e


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- evaluator


@dataclass(slots=True)
class _Entry:
    expires: float
    decision: OPADecision


MAX_CACHE_ENTRIES: Final = 10_000
"""Decision cache bound; the oldest entry goes first when it is full."""

RELOAD_INTERVAL_SECONDS: Final = 1.0
"""At most one policy presence check per this interval after undefined decisions (an OPA
container restarted empty makes every decision undefined until the policy is loaded)."""


class OPAEvaluator:
    """:class:`PolicyEvaluator` over the REST API of a local OPA server.

    Lifecycle: ``await start()`` (waits for OPA's health, uploads the Rego), then
    ``decide()`` per call, ``update()`` when the policy changes, ``close()`` at the end. One
    instance per event loop; not thread-safe (nothing in the sidecar needs that).
    """

    def __init__(
        self,
        settings: OPA,
        rego: str,
        *,
        url: str = DEFAULT_OPA_URL,
        policy_id: str = DEFAULT_POLICY_ID,
        clock: Callable[[], float] = time.monotonic,
        max_cache_entries: int = MAX_CACHE_ENTRIES,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"OPA url must be http(s)://host:port, got {url!r}")
        self._base = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = parts.scheme == "https"
        self._policy_id = policy_id
        self._clock = clock
        self._max_cache = max_cache_entries
        self._settings = settings
        self._rego = rego
        self._rego_digest = _digest(rego)
        self._loaded_digest: str | None = None
        self._decision_url = self._url_for(settings)
        self._cache: dict[bytes, _Entry] = {}
        self._session: aiohttp.ClientSession | None = None
        self._admin: AsyncOpaClient | None = None
        self._last_reload_check = -math.inf
        self._reload_task: asyncio.Task[None] | None = None
        self.stats: Counter[str] = Counter()
        """Decisions by outcome code (``allow``, ``opa_denied``, ..., ``cache_hit``)."""

    def _url_for(self, settings: OPA) -> str:
        return f"{self._base}/v1/data/{settings.decision_path}"

    @property
    def settings(self) -> OPA:
        return self._settings

    @property
    def loaded(self) -> bool:
        """Whether the current Rego is known to be loaded into OPA."""
        return self._loaded_digest == self._rego_digest

    # ---------------------------------------------------------------- lifecycle

    async def start(self, *, wait_seconds: float = 10.0) -> None:
        """Open connections, wait for OPA to be healthy, load the Rego.

        Raises :class:`OPAPolicyError` if OPA rejects the Rego. If OPA does not come up in
        ``wait_seconds`` this returns anyway: decisions then fail (closed, by default) and
        the policy is loaded as soon as OPA answers.
        """
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, enable_cleanup_closed=True),
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"Content-Type": "application/json"},
            )
        admin = await self._admin_client()
        try:
            await admin.wait_for_ready(timeout=wait_seconds, interval=0.05)
        except Exception as e:  # the client raises its own ConnectionsError
            log.warning("OPA at %s not healthy after %.1fs: %s", self._base, wait_seconds, e)
            return
        await self.load()

    async def close(self) -> None:
        """Close connections and stop background work."""
        if self._reload_task is not None:
            self._reload_task.cancel()
            await asyncio.gather(self._reload_task, return_exceptions=True)
            self._reload_task = None
        if self._admin is not None:
            await self._admin.close_connection()
            self._admin = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _admin_client(self) -> AsyncOpaClient:
        if self._admin is None:
            client = AsyncOpaClient(
                host=self._host,
                port=self._port,
                ssl=self._tls,
                retries=0,
                timeout=5.0,
            )
            # Entered here, left in close(): its session lives as long as the evaluator.
            await client.__aenter__()
            self._admin = client
        return self._admin

    async def load(self) -> None:
        """Upload the current Rego to OPA (``PUT /v1/policies/<id>``).

        Raises :class:`OPAPolicyError` if OPA rejects the module and
        ``OSError``/``aiohttp.ClientError`` if it is unreachable.
        """
        await self._put(self._rego, self._rego_digest)

    async def _put(self, rego: str, digest: str) -> None:
        admin = await self._admin_client()
        try:
            # rego_compat=False: never let the client rewrite the author's Rego silently.
            await admin.update_policy_from_string(rego, self._policy_id, rego_compat=False)
        except RegoParseError as e:
            errors = [err for err in e.errors if isinstance(err, Mapping)]
            detail = "; ".join(_format_rego_error(err) for err in errors) or str(e.message)
            raise OPAPolicyError(f"OPA rejected the Rego: {detail}", errors) from e
        self._loaded_digest = digest
        self._cache.clear()
        log.info("loaded Rego %s into OPA as %s", digest[:12], self._policy_id)

    async def update(self, settings: OPA, rego: str) -> None:
        """Apply a changed ``spec.opa``: reload the Rego if it changed, then switch settings.

        OPA swaps modules atomically, and the old settings stay in force until the new
        module is in: decisions in flight during a reload are answered by the old policy or
        the new one, none is refused. A rejected Rego (:class:`OPAPolicyError`, raised)
        leaves the previous module and settings in force; admission validation should have
        caught it. If OPA is unreachable, the new policy becomes the one wanted: decisions
        fail (per ``failMode``) as "not loaded" until the background recovery loads it, so
        no call is decided by the stale module.
        """
        digest = _digest(rego)
        if digest != self._loaded_digest:
            try:
                await self._put(rego, digest)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                log.warning("OPA unreachable while loading the changed policy: %s", e)
        self._settings = settings
        self._decision_url = self._url_for(settings)
        self._rego, self._rego_digest = rego, digest
        self._cache.clear()

    async def refresh(self, rego_dir: str | Path = DEFAULT_REGO_DIR) -> bool:
        """Reload the Rego if its source changed (a ConfigMap updated without the policy).

        Cheap (one file read and a hash), meant for the sidecar's periodic reload tick.
        Returns whether a new module was loaded; raises like :meth:`update`.
        """
        rego = resolve_rego(self._settings, rego_dir)
        if _digest(rego) == self._rego_digest and self.loaded:
            return False
        await self.update(self._settings, rego)
        return self.loaded

    # ---------------------------------------------------------------- decisions

    async def decide(self, input: Mapping[str, Any]) -> OPADecision:
        """Ask OPA about one call; see the module docstring for the outcome codes."""
        settings = self._settings
        ttl = settings.cache_ttl_seconds
        try:
            body = orjson.dumps({"input": input}, option=orjson.OPT_SORT_KEYS)
        except TypeError as e:
            self.stats[CODE_OPA_ERROR] += 1
            return OPADecision(
                False,
                cut_reason(f"input not serializable: {e}"),
                FailureType.SAFETY,
                code=CODE_OPA_ERROR,
            )
        if ttl > 0:
            entry = self._cache.get(body)
            if entry is not None:
                if entry.expires > self._clock():
                    self.stats["cache_hit"] += 1
                    return entry.decision
                del self._cache[body]

        decision = await self._query(body, settings)
        self.stats[decision.code or "allow"] += 1
        if decision.code == CODE_OPA_UNDEFINED:
            self._schedule_reload_check()
        if ttl > 0 and decision.code in (None, CODE_OPA_DENIED):
            if len(self._cache) >= self._max_cache:
                del self._cache[next(iter(self._cache))]
            self._cache[body] = _Entry(
                self._clock() + ttl, dataclasses.replace(decision, cached=True)
            )
        return decision

    async def _query(self, body: bytes, settings: OPA) -> OPADecision:
        session = self._session
        if session is None or session.closed:
            return self._unavailable(settings, CODE_OPA_UNAVAILABLE, "OPA evaluator not started")
        if not self.loaded:
            self._schedule_reload_check(force=True)
            return self._unavailable(settings, CODE_OPA_UNAVAILABLE, "OPA policy is not loaded yet")
        try:
            async with asyncio.timeout(settings.timeout_ms / 1000):
                async with session.post(self._decision_url, data=body) as resp:
                    raw = await resp.read()
                    status = resp.status
        except TimeoutError:
            return self._unavailable(
                settings, CODE_OPA_TIMEOUT, f"OPA did not answer within {settings.timeout_ms} ms"
            )
        except (aiohttp.ClientError, OSError) as e:
            return self._unavailable(
                settings, CODE_OPA_UNAVAILABLE, f"OPA unreachable: {type(e).__name__}: {e}"
            )
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        if status != 200:
            what = ""
            if isinstance(parsed, dict):
                errs = parsed.get("errors")
                first = errs[0] if isinstance(errs, list) and errs else parsed
                if isinstance(first, dict):
                    what = f"{first.get('code', '')}: {first.get('message', '')}"
            return OPADecision(
                False,
                cut_reason(f"OPA error (HTTP {status}) {what}".rstrip()),
                FailureType.SAFETY,
                code=CODE_OPA_ERROR,
            )
        if parsed is None:
            return malformed_decision("response is not JSON")
        return parse_decision(parsed)

    def _unavailable(self, settings: OPA, code: str, reason: str) -> OPADecision:
        if settings.fail_mode is FailMode.OPEN:
            return OPADecision(
                True, cut_reason(f"{reason}; allowed by failMode open"), code=code, fail_open=True
            )
        return OPADecision(False, cut_reason(reason), None, code=code)

    # ---------------------------------------------------------------- recovery

    def _schedule_reload_check(self, *, force: bool = False) -> None:
        """Reload the Rego in the background if OPA lost it (e.g. its container restarted)."""
        now = self._clock()
        if self._reload_task is not None and not self._reload_task.done():
            return
        if not force and now - self._last_reload_check < RELOAD_INTERVAL_SECONDS:
            return
        if force and now - self._last_reload_check < RELOAD_INTERVAL_SECONDS / 10:
            return
        self._last_reload_check = now
        self._reload_task = asyncio.get_running_loop().create_task(self._reload_if_missing())

    async def _reload_if_missing(self) -> None:
        try:
            admin = await self._admin_client()
            if self.loaded:
                try:
                    await admin.get_policy(self._policy_id)
                    return
                except Exception:  # PolicyNotFoundError, or an answer we cannot read
                    log.warning("OPA lost policy %s: reloading", self._policy_id)
            await self.load()
        except OPAPolicyError as e:
            log.error("OPA rejects the policy: %s", e)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            log.warning("OPA still unreachable: %s", e)


def _format_rego_error(err: Mapping[str, Any]) -> str:
    loc = err.get("location")
    where = ""
    if isinstance(loc, Mapping):
        where = f"line {loc.get('row')}, column {loc.get('col')}: "
    return f"{where}{err.get('message', '')} ({err.get('code', '')})"
