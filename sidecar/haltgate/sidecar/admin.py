"""The admin API (port 17020): status, budgets, halt and reset, behind a bearer token.

The token is read from a file (a mounted Secret), re-read when the file changes (rotation
without restart), and compared in constant time. Without a token file every request is
refused: the admin API fails closed. Every answer is JSON.

=======  ==========  ============================================================
method   path        what
=======  ==========  ============================================================
GET      /status     policy (digest, reload errors), halted?, agent, counters
GET      /budgets    the budget engine's snapshot (per dimension used/limit)
POST     /halt       halt the run: ``{"message": "...", "code": "..."}`` (EXTERNAL)
POST     /lift       lift an EXTERNAL halt: ``{"actor": "...", "code": "..."}``; the run, its
                     id and its budgets go on (``code``: only a halt with that code)
POST     /reset      reset a halt: ``{"actor": "..."}`` (starts a new run, budgets at 0)
POST     /flows/approve  approve one call a ``spec.flows`` rule held for approval:
                     ``{"approval": "<id>", "actor": "..."}``; 404 ``unknown_approval``
                     when no refused call of this run has that id
GET      /drift      behaviour drift per dimension (score, threshold, warm-up, sustained);
                     404 ``drift_not_configured`` without ``spec.drift``
POST     /drift/rebaseline  forget the drift baselines ``{"actor": "..."}`` (accept a
                     change); a reset of a ``behaviour_drift`` halt does it too
GET      /healthz    liveness (no token needed; says nothing about the agent)
GET      /readyz     readiness (no token; the pod's probes): 200 once listening and the
                     audit spool writable; 503 ``{"ready": false, "reason": ...}`` while
                     it cannot write (``audit_unavailable``, ``audit_spool_full``,
                     ``disk_full``): unready, refusing calls, recovering by itself
=======  ==========  ============================================================
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web

__all__ = ["AdminBackend", "TokenFile", "create_admin_app"]

log = logging.getLogger("haltgate.sidecar.admin")

MAX_ADMIN_BODY = 64 * 1024
MAX_ADMIN_BODY_SECONDS = 10.0
"""Longest a client may take to send an admin request body (the body timeout)."""


class AdminBackend(Protocol):
    """What the admin API asks of the running sidecar."""

    def ready(self) -> bool: ...
    def not_ready_reason(self) -> str | None: ...
    def status(self) -> dict[str, Any]: ...
    def budgets(self) -> dict[str, Any]: ...
    async def halt(self, message: str, code: str | None, actor: str) -> dict[str, Any]: ...
    async def lift(self, actor: str, code: str | None) -> dict[str, Any]: ...
    async def reset(self, actor: str) -> dict[str, Any]: ...

    def drift_status(self) -> dict[str, Any] | None: ...

    async def rebaseline_drift(self, actor: str) -> dict[str, Any] | None: ...
    async def approve_flow(self, approval: str, actor: str) -> dict[str, Any] | None: ...


class TokenFile:
    """The admin bearer token, from a file, re-read when the file changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._key: tuple[int, int, int] | None = None
        self._token: bytes | None = None

    def current(self) -> bytes | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            self._token, self._key = None, None
            return None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key != self._key:
            try:
                token = self.path.read_bytes().strip()
            except OSError:
                token = b""
            # An empty token file would make "Bearer " a valid credential: refuse instead.
            self._token = token or None
            self._key = key
        return self._token

    def check(self, header: str | None) -> bool:
        token = self.current()
        if token is None or not header:
            return False
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode(), token)


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": {"type": "admin", "code": code, "message": message}}, status)


def create_admin_app(backend: AdminBackend, tokens: TokenFile) -> web.Application:
    """The admin application (mount it on its own port)."""

    @web.middleware
    async def auth(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in ("/healthz", "/readyz"):
            return await handler(request)
        if not tokens.check(request.headers.get("Authorization")):
            resp = _error(401, "unauthorized", "a valid bearer token is required")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="haltgate-admin"'
            return resp
        try:
            return await handler(request)
        except web.HTTPException as e:
            return _error(e.status, "http_error", e.reason)

    async def body_of(request: web.Request) -> dict[str, Any] | web.Response:
        if request.content_length is not None and request.content_length > MAX_ADMIN_BODY:
            return _error(413, "body_too_large", "admin request body too large")
        try:
            async with asyncio.timeout(MAX_ADMIN_BODY_SECONDS):
                raw = await request.content.read(MAX_ADMIN_BODY + 1)
        except TimeoutError:
            return _error(408, "client_timeout", "admin request body sent too slowly")
        if len(raw) > MAX_ADMIN_BODY:
            return _error(413, "body_too_large", "admin request body too large")
        if not raw.strip():
            return {}
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _error(400, "invalid_json", "body is not valid JSON")
        if not isinstance(obj, dict):
            return _error(400, "invalid_request", "body must be a JSON object")
        return obj

    async def status(request: web.Request) -> web.Response:
        return _json(backend.status())

    async def budgets(request: web.Request) -> web.Response:
        return _json(backend.budgets())

    async def halt(request: web.Request) -> web.Response:
        body = await body_of(request)
        if isinstance(body, web.Response):
            return body
        message = body.get("message") or body.get("reason") or "halted by an operator"
        code = body.get("code")
        actor = body.get("actor") or "admin-api"
        if not all(isinstance(v, str) for v in (message, actor)) or not (
            code is None or isinstance(code, str)
        ):
            return _error(400, "invalid_request", "message, code and actor must be strings")
        log.warning("halt requested by %s: %s", actor, message)
        return _json(await backend.halt(message[:512], code, actor[:128]))

    async def lift(request: web.Request) -> web.Response:
        body = await body_of(request)
        if isinstance(body, web.Response):
            return body
        actor = body.get("actor") or "admin-api"
        code = body.get("code")
        if not isinstance(actor, str):
            return _error(400, "invalid_request", "actor must be a string")
        if not (code is None or isinstance(code, str)):
            return _error(400, "invalid_request", "code must be a string")
        log.warning("lift requested by %s (code %s)", actor, code or "any")
        return _json(await backend.lift(actor[:128], code))

    async def reset(request: web.Request) -> web.Response:
        body = await body_of(request)
        if isinstance(body, web.Response):
            return body
        actor = body.get("actor") or "admin-api"
        if not isinstance(actor, str):
            return _error(400, "invalid_request", "actor must be a string")
        log.warning("reset requested by %s", actor)
        return _json(await backend.reset(actor[:128]))

    async def approve_flow(request: web.Request) -> web.Response:
        body = await body_of(request)
        if isinstance(body, web.Response):
            return body
        approval = body.get("approval")
        actor = body.get("actor") or "admin-api"
        if not isinstance(approval, str) or not approval or not isinstance(actor, str):
            return _error(
                400, "invalid_request", "approval (a string) is required; actor must be a string"
            )
        answer = await backend.approve_flow(approval[:64], actor[:128])
        if answer is None:
            return _error(404, "unknown_approval", "no call of this run waits for that approval id")
        log.warning("flow approval %s granted by %s", approval[:64], actor[:128])
        return _json(answer)

    async def drift(request: web.Request) -> web.Response:
        answer = backend.drift_status()
        if answer is None:
            return _error(404, "drift_not_configured", "the policy has no spec.drift")
        return _json(answer)

    async def rebaseline(request: web.Request) -> web.Response:
        body = await body_of(request)
        if isinstance(body, web.Response):
            return body
        actor = body.get("actor") or "admin-api"
        if not isinstance(actor, str):
            return _error(400, "invalid_request", "actor must be a string")
        answer = await backend.rebaseline_drift(actor[:128])
        if answer is None:
            return _error(404, "drift_not_configured", "the policy has no spec.drift")
        return _json(answer)

    async def healthz(request: web.Request) -> web.Response:
        return _json({"ok": True})

    async def readyz(request: web.Request) -> web.Response:
        reason = backend.not_ready_reason()
        if reason is None:
            return _json({"ready": True})
        return _json({"ready": False, "reason": reason}, 503)

    app = web.Application(middlewares=[auth], client_max_size=MAX_ADMIN_BODY)
    app.router.add_get("/status", status)
    app.router.add_get("/budgets", budgets)
    app.router.add_post("/halt", halt)
    app.router.add_post("/lift", lift)
    app.router.add_post("/reset", reset)
    app.router.add_post("/flows/approve", approve_flow)
    app.router.add_get("/drift", drift)
    app.router.add_post("/drift/rebaseline", rebaseline)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
