"""A small client of the haltgate sidecar: where to send calls, status, remaining budgets.

Calls go to the explicit listener (``HALTGATE_URL``, default ``http://127.0.0.1:17000``)
under an upstream alias of the policy: :func:`base_url` builds ``<url>/<alias>/<path>``.
Status and budgets come from the admin API (``HALTGATE_ADMIN_URL``, default
``http://127.0.0.1:17020``) with the bearer token of ``HALTGATE_ADMIN_TOKEN`` or the file
named by ``HALTGATE_ADMIN_TOKEN_FILE``. Errors of the sidecar become the exceptions of
:mod:`haltgate.sdk.errors` (re-exported here).

:class:`SidecarClient` is synchronous (standard library only); :class:`AsyncSidecarClient`
uses aiohttp, for agents running in an event loop.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from haltgate.sdk.errors import (
    DeniedError,
    ExhaustionError,
    ExternalHaltError,
    HaltError,
    HaltgateError,
    OverriskError,
    SafetyError,
    SidecarError,
    StagnationError,
    _header,
    error_from_body,
    error_from_jsonrpc,
    error_from_sse_data,
    find_haltgate_error,
)

__all__ = [
    "AsyncSidecarClient",
    "BudgetView",
    "DeniedError",
    "ExhaustionError",
    "ExternalHaltError",
    "HaltError",
    "HaltgateError",
    "OverriskError",
    "SafetyError",
    "SidecarClient",
    "SidecarError",
    "StagnationError",
    "base_url",
    "budget_warnings",
    "error_from_body",
    "error_from_jsonrpc",
    "error_from_sse_data",
    "find_haltgate_error",
    "raise_for_response",
]

DEFAULT_URL = "http://127.0.0.1:17000"
DEFAULT_ADMIN_URL = "http://127.0.0.1:17020"
WARNING_HEADER = "x-haltgate-budget-warning"
DECISION_HEADER = "x-haltgate-decision-id"
TIMEOUT_SECONDS = 5.0
"""Admin API requests are local and small: a slow answer means something is wrong."""
MAX_ADMIN_BYTES = 4 * 1024 * 1024


def base_url(alias: str, path: str = "", *, url: str | None = None) -> str:
    """The explicit-mode base URL of an upstream alias, e.g. ``base_url("openai", "v1")``.

    ``url`` defaults to ``HALTGATE_URL`` or ``http://127.0.0.1:17000``.
    """
    root = (url or os.environ.get("HALTGATE_URL") or DEFAULT_URL).rstrip("/")
    tail = "/".join(p.strip("/") for p in (alias, path) if p.strip("/"))
    return f"{root}/{tail}"


def budget_warnings(headers: Mapping[str, str]) -> tuple[str, ...]:
    """Dimensions past their ``warnAt`` from an answer's ``x-haltgate-budget-warning``."""
    value = _header(headers, WARNING_HEADER) or ""
    return tuple(d.strip() for d in value.split(",") if d.strip())


def raise_for_response(status: int, headers: Mapping[str, str], body: bytes) -> None:
    """Raise the haltgate exception an answer carries (HTTP or JSON-RPC error), if any.

    For tools that call HTTP or MCP upstreams through the sidecar with their own client.
    Answers of the upstream itself (no haltgate error object) are left to the caller.
    """
    err = error_from_body(body, status=status, headers=headers) if status >= 400 else None
    if err is None and DECISION_HEADER in {k.lower() for k in headers}:
        # MCP refusals come as HTTP 200 with a JSON-RPC error.
        err = error_from_jsonrpc(body)
    if err is not None:
        raise err


@dataclass(frozen=True, slots=True)
class BudgetView:
    """One budget dimension as the sidecar reports it."""

    name: str
    used: float
    reserved: float
    limit: float

    @property
    def remaining(self) -> float:
        """What is left for new calls (in-flight reservations count as spent)."""
        return max(0.0, self.limit - self.used - self.reserved)

    @property
    def fraction_used(self) -> float:
        """``(used + reserved) / limit`` (1.0 for a zero limit)."""
        return 1.0 if self.limit <= 0 else min(1.0, (self.used + self.reserved) / self.limit)


def _token_from_env() -> str | None:
    token = os.environ.get("HALTGATE_ADMIN_TOKEN")
    if token:
        return token.strip()
    path = os.environ.get("HALTGATE_ADMIN_TOKEN_FILE")
    if path:
        return Path(path).read_text().strip()
    return None


def budgets_of(snapshot: Mapping[str, Any]) -> dict[str, BudgetView]:
    """The dimensions of a ``GET /budgets`` answer (or of an error's ``budget``)."""
    raw = snapshot.get("budget", snapshot)
    out: dict[str, BudgetView] = {}
    if isinstance(raw, Mapping):
        for name, entry in raw.items():
            if isinstance(entry, Mapping) and "limit" in entry:
                out[name] = BudgetView(name, float(entry.get("used", 0.0)),
                                       float(entry.get("reserved", 0.0)),
                                       float(entry["limit"]))  # fmt: skip
    return out


def _admin_error(status: int, body: bytes) -> SidecarError:
    text = body[:200].decode("utf-8", "replace")
    code = "unauthorized" if status == 401 else f"admin_http_{status}"
    return SidecarError(f"admin API answered {status}: {text}", type="admin", code=code,
                        status=status)  # fmt: skip



def _unreachable(e: Exception) -> SidecarError:
    return SidecarError(f"admin API unreachable: {e}", type="unavailable",
                        code="sidecar_unreachable")  # fmt: skip


def _admin_doc(body: bytes) -> dict[str, Any]:
    """The JSON object of an admin API answer."""
    doc = orjson.loads(body)
    if not isinstance(doc, dict):
        raise SidecarError("admin API answered a non-object", type="admin",
                           code="admin_bad_answer")  # fmt: skip
    return doc


class _Base:
    def __init__(self, admin_url: str | None = None, token: str | None = None,
                 timeout: float = TIMEOUT_SECONDS) -> None:  # fmt: skip
        self.admin_url = (admin_url or os.environ.get("HALTGATE_ADMIN_URL")
                          or DEFAULT_ADMIN_URL).rstrip("/")  # fmt: skip
        self.token = token if token is not None else _token_from_env()
        self.timeout = timeout

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


class SidecarClient(_Base):
    """Synchronous admin API client: ``status()``, ``budgets()``, ``remaining()``, ``halted()``.

    The admin API needs the bearer token (``token=``, ``HALTGATE_ADMIN_TOKEN`` or
    ``HALTGATE_ADMIN_TOKEN_FILE``); a wrong or missing one raises :class:`SidecarError`
    with code ``unauthorized``.
    """

    def _get(self, path: str) -> dict[str, Any]:
        req = urllib.request.Request(self.admin_url + path, headers=self._headers())
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read(MAX_ADMIN_BYTES)
        except urllib.error.HTTPError as e:
            raise _admin_error(e.code, e.read(MAX_ADMIN_BYTES)) from e
        except OSError as e:
            raise _unreachable(e) from e
        return _admin_doc(body)

    def status(self) -> dict[str, Any]:
        """``GET /status``: policy, halted, agent, counters."""
        return self._get("/status")

    def budgets(self) -> dict[str, BudgetView]:
        """``GET /budgets``, per dimension."""
        return budgets_of(self._get("/budgets"))

    def remaining(self) -> dict[str, float]:
        """What is left of each budget dimension."""
        return {name: b.remaining for name, b in self.budgets().items()}

    def halted(self) -> bool:
        """True while the sidecar refuses every call of the run."""
        return bool(self._get("/budgets").get("halted"))


class AsyncSidecarClient(_Base):
    """The same as :class:`SidecarClient` for asyncio code (aiohttp)."""

    async def _get(self, path: str) -> dict[str, Any]:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                self.admin_url + path, headers=self._headers()
            ) as resp:
                body = await resp.content.read(MAX_ADMIN_BYTES)
                if resp.status >= 400:
                    raise _admin_error(resp.status, body)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise _unreachable(e) from e
        return _admin_doc(body)

    async def status(self) -> dict[str, Any]:
        """``GET /status``."""
        return await self._get("/status")

    async def budgets(self) -> dict[str, BudgetView]:
        """``GET /budgets``, per dimension."""
        return budgets_of(await self._get("/budgets"))

    async def remaining(self) -> dict[str, float]:
        """What is left of each budget dimension."""
        return {name: b.remaining for name, b in (await self.budgets()).items()}

    async def halted(self) -> bool:
        """True while the sidecar refuses every call of the run."""
        return bool((await self._get("/budgets")).get("halted"))
