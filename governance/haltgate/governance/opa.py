"""OPA decisions: the policy's Rego, evaluated by the Open Policy Agent next to the sidecar.

The sidecar asks a local OPA server (a container of the same pod, on loopback) one question
per governed call: may this call go ahead? The question is the *input document* built by
:func:`build_input`; the answer is the value of the policy's decision rule, either a
boolean or an object ``{allow, reason, failure_type, risk, headers}`` (see
``docs/policies.md``). Everything that is not a clear answer is a deny with a typed code:

=================  =====================================================  ==============
code               when                                                   fail mode
=================  =====================================================  ==============
opa_denied         the policy answered allow = false                      —
opa_undefined      the decision rule is undefined for this input          always deny
opa_malformed      the answer is neither a bool nor a valid object        always deny
opa_error          OPA reported an evaluation error (e.g. a conflict)     always deny
opa_unavailable    OPA unreachable, or the policy not loaded              ``failMode``
opa_timeout        no answer within ``timeoutMs``                         ``failMode``
=================  =====================================================  ==============

Only unavailability and timeouts follow ``spec.opa.failMode`` (closed by default): a policy
that answers badly is a policy bug and never opens the gate. A decision allowed because of
``failMode: open`` carries ``fail_open=True`` so the sidecar counts it in a metric and
writes it to the audit trail.

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
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, TypedDict
from urllib.parse import urlsplit

import aiohttp
import orjson
from opa_client import AsyncOpaClient
from opa_client.errors import RegoParseError

from haltgate.governance.engine.pricing import normalise_model
from haltgate.governance.policy import OPA, FailMode, FailureType
from haltgate.governance.request import CallView
from haltgate.governance.tools import AuthzResult

__all__ = [
    "CODE_OPA_DENIED",
    "CODE_OPA_ERROR",
    "CODE_OPA_MALFORMED",
    "CODE_OPA_TIMEOUT",
    "CODE_OPA_UNAVAILABLE",
    "CODE_OPA_UNDEFINED",
    "DEFAULT_OPA_URL",
    "DEFAULT_REGO_DIR",
    "INPUT_VERSION",
    "OPADecision",
    "OPAEvaluator",
    "OPAInput",
    "OPAPolicyError",
    "PolicyEvaluator",
    "build_input",
    "parse_decision",
    "resolve_rego",
]

log = logging.getLogger(__name__)

CODE_OPA_DENIED: Final = "opa_denied"
CODE_OPA_UNDEFINED: Final = "opa_undefined"
CODE_OPA_MALFORMED: Final = "opa_malformed"
CODE_OPA_ERROR: Final = "opa_error"
CODE_OPA_UNAVAILABLE: Final = "opa_unavailable"
CODE_OPA_TIMEOUT: Final = "opa_timeout"

INPUT_VERSION: Final = 1
"""Version of the input document schema; bumped only on incompatible changes."""

DEFAULT_OPA_URL: Final = "http://127.0.0.1:8181"
"""Where the injected OPA container listens (loopback inside the pod)."""

DEFAULT_REGO_DIR: Final = "/etc/haltgate/opa"
"""Where the ConfigMap named by ``spec.opa.configMapRef`` is mounted into the sidecar."""

DEFAULT_POLICY_ID: Final = "haltgate/policy"
"""Id of the module in OPA (``PUT /v1/policies/<id>``): one policy per sidecar's OPA."""

MAX_REASON_CHARS: Final = 512
"""Reasons and OPA error messages reach the agent and the audit trail: cut to this size."""

MAX_HEADERS: Final = 16
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}\Z")
_FORBIDDEN_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
    }
)
"""Framing and hop-by-hop headers a policy must not set (they would corrupt the exchange)."""


# --------------------------------------------------------------------------- wire formats


class OPARequest(TypedDict):
    kind: str | None
    method: str
    scheme: str
    host: str
    port: int
    path: str
    upstream: str | None
    model: str | None
    model_normalised: str | None
    mcp_method: str | None
    stream: bool
    max_output_tokens: int | None
    query: dict[str, list[str]]


class OPATool(TypedDict):
    name: str
    server: str | None
    arguments: Any


class OPAAuthz(TypedDict):
    allowed: bool
    rule: str | None
    risk: float
    code: str | None


class OPAMcpMessage(TypedDict):
    """One JSON-RPC message of an MCP request."""

    method: str | None
    uri: str | None
    prompt: str | None


class OPAInput(TypedDict):
    """The input document of every decision (``input`` in Rego). See docs/policies.md."""

    version: int
    agent: dict[str, str]
    request: OPARequest
    tools: list[OPATool]
    mcp: list[OPAMcpMessage]
    authz: OPAAuthz | None
    budget: dict[str, Any]
    usage: dict[str, Any]
    findings: list[Any]


def _plain(value: Any) -> Any:
    """Findings and budget entries as JSON-ready values: their own ``to_dict()`` /
    ``as_dict()`` (guardrail findings: never the matched text), else dataclass fields."""
    for method in ("to_dict", "as_dict"):
        convert = getattr(value, method, None)
        if callable(convert):
            return convert()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def build_input(
    call: CallView,
    *,
    authz: AuthzResult | None = None,
    budget: Mapping[str, Any] | None = None,
    usage: Mapping[str, Any] | None = None,
    findings: Sequence[Any] = (),
) -> OPAInput:
    """Build the documented input document for one call.

    ``budget`` is the engine's per-dimension view (``{"tokens": {"used", "reserved",
    "limit"}, ...}``), ``usage`` the run's totals so far (calls, tokens, cost), ``findings``
    the guardrail findings on the request. Keep volatile values (ids, timestamps) out: they
    would make every input unique and defeat the decision cache.
    """
    return {
        "version": INPUT_VERSION,
        "agent": call.agent.as_dict(),
        "request": {
            "kind": call.kind.value if call.kind is not None else None,
            "method": call.method,
            "scheme": call.scheme,
            "host": call.host,
            "port": call.port,
            "path": call.path,
            "upstream": call.upstream,
            "model": call.model,
            # As pricing and `models` rules read it (lower case, no provider prefix or
            # date snapshot): Rego compares this, not the spelling the agent chose.
            "model_normalised": normalise_model(call.model) if call.model else None,
            "mcp_method": call.mcp_method,
            "stream": call.stream,
            "max_output_tokens": call.max_output_tokens,
            # The query as read once and forwarded: every value of every name, in order
            # (Rego sees a repeated name whole; canonical_query).
            "query": _query_params(call.query),
        },
        "tools": [
            {"name": t.name, "server": t.server, "arguments": t.arguments} for t in call.tool_calls
        ],
        "mcp": [{"method": m, "uri": u, "prompt": p} for m, u, p in call.mcp_messages],
        "authz": None
        if authz is None
        else {
            "allowed": authz.allowed,
            "rule": authz.rule,
            "risk": authz.risk,
            "code": authz.code,
        },
        "budget": {k: _plain(v) for k, v in (budget or {}).items()},
        "usage": dict(usage or {}),
        "findings": [_plain(f) for f in findings],
    }


def _query_params(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


@dataclass(frozen=True, slots=True)
class OPADecision:
    """The outcome of one OPA decision.

    ``allow``: go ahead. ``code``: ``None`` for a plain allow, else one of the ``opa_*``
    codes (also set on a fail-open allow, which then has ``fail_open=True``). ``headers``:
    on allow, added to the request forwarded upstream; on deny, to the error response.
    ``risk``: added to the risk budget. ``failure_type``: for denials the policy's choice
    (default SAFETY); ``None`` for unavailability (the sidecar reports it as unavailable).
    """

    allow: bool
    reason: str = ""
    failure_type: FailureType | None = None
    risk: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)
    code: str | None = None
    fail_open: bool = False
    """Allowed only because OPA failed and ``failMode`` is ``open``: count and audit it."""
    cached: bool = False
    """Served from the decision cache."""
    opa_decision_id: str | None = None
    """OPA's own decision id when its decision log is on, to join the two trails."""


class PolicyEvaluator(Protocol):
    """What the sidecar's pipeline needs from a policy decision point."""

    async def decide(self, input: Mapping[str, Any]) -> OPADecision:
        """Decide one call. Never raises for OPA's failures: they are typed denials."""
        ...


# --------------------------------------------------------------------------- parsing


def _cut(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def _malformed(why: str) -> OPADecision:
    return OPADecision(
        False, _cut(f"malformed OPA decision: {why}"), FailureType.SAFETY, code=CODE_OPA_MALFORMED
    )


def parse_decision(body: Any) -> OPADecision:
    """Turn the body of ``POST /v1/data/<path>`` (already parsed JSON) into a decision.

    ``{}`` (no ``result``) is undefined; ``result`` must be a boolean or an object with a
    boolean ``allow`` and optional ``reason`` (string), ``failure_type`` (one of the failure
    types), ``risk`` (finite number >= 0) and ``headers`` (string to string). Unknown keys are
    ignored so policies can carry their own annotations.
    """
    if not isinstance(body, dict):
        return _malformed("response is not a JSON object")
    decision_id = body.get("decision_id")
    decision_id = decision_id if isinstance(decision_id, str) else None
    if "result" not in body:
        return OPADecision(
            False,
            "OPA decision is undefined for this input (check the "
            "decision path and give the rule a default)",
            FailureType.SAFETY,
            code=CODE_OPA_UNDEFINED,
            opa_decision_id=decision_id,
        )
    result = body["result"]
    if isinstance(result, bool):
        return OPADecision(
            result,
            "" if result else "denied by OPA policy",
            None if result else FailureType.SAFETY,
            code=None if result else CODE_OPA_DENIED,
            opa_decision_id=decision_id,
        )
    if not isinstance(result, dict):
        return _malformed(f"expected a boolean or an object, got {type(result).__name__}")
    allow = result.get("allow")
    if not isinstance(allow, bool):
        return _malformed("'allow' must be a boolean")
    reason = result.get("reason", "")
    if not isinstance(reason, str):
        return _malformed("'reason' must be a string")
    raw_ft = result.get("failure_type")
    failure_type: FailureType | None = None
    if raw_ft is not None:
        if not isinstance(raw_ft, str) or raw_ft.upper() not in FailureType.__members__:
            return _malformed(f"'failure_type' must be one of {', '.join(FailureType)}")
        failure_type = FailureType[raw_ft.upper()]
    risk = result.get("risk", 0)
    if (
        isinstance(risk, bool)
        or not isinstance(risk, int | float)
        or not (math.isfinite(risk) and risk >= 0)
    ):
        return _malformed("'risk' must be a finite number >= 0")
    headers = result.get("headers", {})
    if not isinstance(headers, dict) or len(headers) > MAX_HEADERS:
        return _malformed(f"'headers' must be an object of at most {MAX_HEADERS} entries")
    for name, value in headers.items():
        if not _HEADER_NAME.match(name) or name.lower() in _FORBIDDEN_HEADERS:
            return _malformed(f"header name {name!r} is not allowed")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0") or len(value) > 1024:
            return _malformed(f"header {name!r} must be a single-line string")
    if not allow and failure_type is None:
        failure_type = FailureType.SAFETY
    return OPADecision(
        allow=allow,
        reason=_cut(reason or ("" if allow else "denied by OPA policy")),
        failure_type=None if allow else failure_type,
        risk=float(risk),
        headers=dict(headers),
        code=None if allow else CODE_OPA_DENIED,
        opa_decision_id=decision_id,
    )


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
                False, _cut(f"input not serializable: {e}"), FailureType.SAFETY, code=CODE_OPA_ERROR
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
                _cut(f"OPA error (HTTP {status}) {what}".rstrip()),
                FailureType.SAFETY,
                code=CODE_OPA_ERROR,
            )
        if parsed is None:
            return _malformed("response is not JSON")
        return parse_decision(parsed)

    def _unavailable(self, settings: OPA, code: str, reason: str) -> OPADecision:
        if settings.fail_mode is FailMode.OPEN:
            return OPADecision(
                True, _cut(f"{reason}; allowed by failMode open"), code=code, fail_open=True
            )
        return OPADecision(False, _cut(reason), None, code=code)

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
