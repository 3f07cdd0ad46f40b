"""A small client of the haltgate sidecar: where to send calls, the run's status and budgets.

Calls go to the explicit listener (``HALTGATE_URL``, default ``http://127.0.0.1:17000``)
under an upstream alias of the policy: :func:`base_url` builds ``<url>/<alias>/<path>``.
Status and budgets come from the same listener's read-only view of the agent's own run,
``GET <url>/haltgate/v1/self``: no token, nothing it can change, and reachable from the
agent's container (the admin API is not, by design). Errors of the sidecar become the
exceptions of :mod:`haltgate.sdk.errors` (re-exported here).

Standard library only: :class:`SidecarClient` is synchronous; :class:`AsyncSidecarClient`
runs the same requests in a worker thread, for agents in an event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
from haltgate.sdk.wire import DECISION_HEADER, SELF_PATH, WARNING_HEADER

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
    "budgets_of",
    "error_from_body",
    "error_from_jsonrpc",
    "error_from_sse_data",
    "find_haltgate_error",
    "halted_in",
    "raise_for_response",
]

DEFAULT_URL = "http://127.0.0.1:17000"
TIMEOUT_SECONDS = 5.0
"""The view is local and small: a slow answer means something is wrong."""
MAX_VIEW_BYTES = 1024 * 1024


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


def budgets_of(snapshot: Mapping[str, Any]) -> dict[str, BudgetView]:
    """The dimensions of a self view (or of an admin ``GET /budgets`` answer, or of an
    error's ``budget``)."""
    raw = snapshot.get("budget", snapshot)
    out: dict[str, BudgetView] = {}
    if isinstance(raw, Mapping):
        for name, entry in raw.items():
            if isinstance(entry, Mapping) and "limit" in entry:
                out[name] = BudgetView(name, float(entry.get("used", 0.0)),
                                       float(entry.get("reserved", 0.0)),
                                       float(entry["limit"]))  # fmt: skip
    return out


def _view_error(status: int, body: bytes) -> SidecarError:
    found = error_from_body(body, status=status)
    if found is not None and isinstance(found, SidecarError):
        return found
    text = body[:200].decode("utf-8", "replace")
    return SidecarError(f"the sidecar's self view answered {status}: {text}", type="unavailable",
                        code=f"self_view_http_{status}", status=status)  # fmt: skip


def _unreachable(url: str, e: BaseException) -> SidecarError:
    return SidecarError(f"the sidecar's self view at {url} is unreachable: {e}",
                        type="unavailable", code="sidecar_unreachable")  # fmt: skip


def _view_doc(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise SidecarError("the sidecar's self view answered something else than a JSON "
                           "object", type="unavailable", code="self_view_bad_answer")  # fmt: skip
    return doc


class SidecarClient:
    """The agent's own run as the sidecar sees it: ``status()``, ``budgets()``,
    ``remaining()``, ``halted()``.

    ``url``: the explicit listener (``HALTGATE_URL``, default ``http://127.0.0.1:17000``).
    A sidecar that cannot be reached raises :class:`SidecarError` ``sidecar_unreachable``
    (``retryable``).
    """

    def __init__(self, url: str | None = None, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = (url or os.environ.get("HALTGATE_URL") or DEFAULT_URL).rstrip("/")
        self.timeout = timeout

    @property
    def view_url(self) -> str:
        """``<url>/haltgate/v1/self``."""
        return self.url + SELF_PATH

    def status(self) -> dict[str, Any]:
        """The whole view: ``run_id``, ``agent``, ``halted`` (``None`` or failure type,
        code, message), ``budget`` per dimension, ``pool``."""
        # No proxy of the environment: the view is the sidecar itself, never an upstream.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        req = urllib.request.Request(self.view_url, headers={"Accept": "application/json"})
        try:
            with opener.open(req, timeout=self.timeout) as resp:
                body = resp.read(MAX_VIEW_BYTES)
        except urllib.error.HTTPError as e:
            raise _view_error(e.code, e.read(MAX_VIEW_BYTES)) from e
        except (OSError, ValueError) as e:
            raise _unreachable(self.view_url, e) from e
        return _view_doc(body)

    def budgets(self) -> dict[str, BudgetView]:
        """Per dimension: used, reserved, limit, ``remaining``."""
        return budgets_of(self.status())

    def remaining(self) -> dict[str, float]:
        """What is left of each budget dimension."""
        return {name: b.remaining for name, b in self.budgets().items()}

    def halted(self) -> bool:
        """True while the sidecar refuses every call of the run (the run or its pool)."""
        return halted_in(self.status())


class AsyncSidecarClient:
    """The same as :class:`SidecarClient` for asyncio code (requests in a worker thread)."""

    def __init__(self, url: str | None = None, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.sync = SidecarClient(url, timeout=timeout)

    @property
    def url(self) -> str:
        return self.sync.url

    async def status(self) -> dict[str, Any]:
        """The whole view (see :meth:`SidecarClient.status`)."""
        return await asyncio.to_thread(self.sync.status)

    async def budgets(self) -> dict[str, BudgetView]:
        """Per dimension: used, reserved, limit, ``remaining``."""
        return budgets_of(await self.status())

    async def remaining(self) -> dict[str, float]:
        """What is left of each budget dimension."""
        return {name: b.remaining for name, b in (await self.budgets()).items()}

    async def halted(self) -> bool:
        """True while the sidecar refuses every call of the run (the run or its pool)."""
        return halted_in(await self.status())


def halted_in(view: Mapping[str, Any]) -> bool:
    """Whether a self view says the run is halted (by its own budgets or by its pool)."""
    pool = view.get("pool")
    return bool(view.get("halted")) or (isinstance(pool, Mapping) and pool.get("state") == "Halted")
