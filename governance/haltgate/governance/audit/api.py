"""The authenticated HTTP query API of the audit trail (``haltgate audit serve``).

Every ``/v1`` route needs ``Authorization: Bearer <token>``; the token is compared in
constant time and the server refuses to start without one. ``/healthz`` and
``/openapi.json`` are open (they reveal no records). Errors are JSON:
``{"error": {"code": "...", "message": "..."}}``.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, cast, get_args

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware
from psycopg_pool import AsyncConnectionPool

from haltgate.governance.audit.explain import ExplainError, explain
from haltgate.governance.audit.policies import PolicyStore
from haltgate.governance.audit.query import (
    MAX_LIMIT,
    CursorError,
    Order,
    RecordFilter,
    build_cost_query,
    build_records_query,
    cost_rows_to_dicts,
    page_from_rows,
    parse_time,
)
from haltgate.governance.audit.verify import verify_database

__all__ = ["OPENAPI", "create_app"]

POOL = web.AppKey("pool", AsyncConnectionPool)
POLICIES = web.AppKey("policies", PolicyStore)
DSN = web.AppKey("dsn", str)
_OPEN_PATHS = frozenset({"/healthz", "/openapi.json"})
_FILTERS = [n for n in RecordFilter.names() if n not in ("since", "until")]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": {"code": code, "message": message}}, status)


class _BadRequest(Exception):
    pass


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as e:
        raise _BadRequest(f"{name}: not ISO 8601 or epoch seconds") from e


def _filter(request: web.Request, **fixed: str) -> RecordFilter:
    q = request.query
    unknown = set(q) - {*_FILTERS, "since", "until", "limit", "cursor", "order"}
    if unknown:
        raise _BadRequest(f"unknown query parameters: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {n: q.get(n) for n in _FILTERS}
    values.update(fixed)
    return RecordFilter(
        since=_time(q.get("since"), "since"), until=_time(q.get("until"), "until"), **values
    )


def bearer_auth(token: str) -> Middleware:
    """Middleware: require ``Authorization: Bearer <token>`` outside the open paths."""
    expected = token.encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in _OPEN_PATHS:
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), expected
            ):
                response = _error(401, "unauthorized", "a valid bearer token is required")
                response.headers["WWW-Authenticate"] = 'Bearer realm="haltgate-audit"'
                return response
        try:
            return await handler(request)
        except _BadRequest as e:
            return _error(400, "bad_request", str(e))
        except CursorError as e:
            return _error(400, "bad_cursor", str(e))

    return middleware


async def _records(request: web.Request, flt: RecordFilter) -> web.Response:
    q = request.query
    try:
        limit = int(q.get("limit", "100"))
    except ValueError as e:
        raise _BadRequest("limit: not an integer") from e
    if not 1 <= limit <= MAX_LIMIT:
        raise _BadRequest(f"limit must be within 1..{MAX_LIMIT}")
    order = q.get("order", "asc")
    if order not in get_args(Order):
        raise _BadRequest("order must be asc, desc or chain")
    order_lit = cast(Order, order)
    sql, params = build_records_query(flt, limit=limit, cursor=q.get("cursor"), order=order_lit)
    async with request.app[POOL].connection() as conn:
        rows = await (await conn.execute(sql, params)).fetchall()
    page = page_from_rows(rows, limit, order_lit)
    return _json({"records": page.records, "next_cursor": page.next_cursor})


async def list_records(request: web.Request) -> web.Response:
    """GET /v1/records: filtered records, oldest first (``order=desc`` for newest,
    ``order=chain`` for each chain in sequence order)."""
    return await _records(request, _filter(request))


async def run_history(request: web.Request) -> web.Response:
    """GET /v1/runs/{run_id}/records: the execution history of one agent run."""
    return await _records(request, _filter(request, run_id=request.match_info["run_id"]))


async def costs(request: web.Request) -> web.Response:
    """GET /v1/costs: cost, calls, refusals and tokens per agent."""
    flt = _filter(request)
    sql, params = build_cost_query(flt)
    async with request.app[POOL].connection() as conn:
        rows = await (await conn.execute(sql, params)).fetchall()
    return _json({"agents": cost_rows_to_dicts(rows)})


async def verify(request: web.Request) -> web.Response:
    """GET /v1/verify: walk the chains (optionally one, or a time window)."""
    q = request.query
    report = await asyncio.to_thread(
        verify_database,
        request.app[DSN],
        chain_id=q.get("chain_id"),
        since=_time(q.get("since"), "since"),
        until=_time(q.get("until"), "until"),
    )
    return _json(report.as_dict())


_EXPLAIN_SQL = (
    "SELECT record FROM haltgate.audit_records WHERE decision_id = %s "
    "ORDER BY chain_id, seq LIMIT 16"
)


async def explain_decision(request: web.Request) -> web.Response:
    """GET /v1/decisions/{decision_id}/explain: stages, deciding rule or budget, numbers,
    and the decision re-derived by the engine from the record (``match``)."""
    decision_id = request.match_info["decision_id"]
    async with request.app[POOL].connection() as conn:
        rows = await (await conn.execute(_EXPLAIN_SQL, (decision_id,))).fetchall()
    records = [orjson.loads(row[0]) for row in rows]
    try:
        doc = await asyncio.to_thread(explain, records, request.app[POLICIES])
    except ExplainError as e:
        status = 404 if e.code == "decision_not_found" else 422
        return _error(status, e.code, e.message)
    return _json(doc)


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: the database answers."""
    try:
        async with request.app[POOL].connection(timeout=5) as conn:
            await conn.execute("SELECT 1")
    except Exception as e:  # any failure means not ready; the reason goes to the body
        return _error(503, "database_unavailable", type(e).__name__)
    return _json({"ok": True})


async def openapi(request: web.Request) -> web.Response:
    """GET /openapi.json."""
    return _json(OPENAPI)


def create_app(
    dsn: str, token: str, *, pool_size: int = 4, policies: PolicyStore | None = None
) -> web.Application:
    """The API application. ``dsn`` should be a role in ``haltgate_audit_reader``;
    ``policies``: the policy files explain may replay decisions with (by digest)."""
    if len(token) < 16:
        raise ValueError("the audit API token must be at least 16 characters")
    app = web.Application(middlewares=[bearer_auth(token)])
    app[DSN] = dsn
    app[POLICIES] = policies if policies is not None else PolicyStore()

    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(dsn, min_size=1, max_size=pool_size, open=False)
        await pool.open()
        app[POOL] = pool
        yield
        await pool.close()

    app.cleanup_ctx.append(pool_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/v1/records", list_records)
    app.router.add_get("/v1/runs/{run_id}/records", run_history)
    app.router.add_get("/v1/costs", costs)
    app.router.add_get("/v1/verify", verify)
    app.router.add_get("/v1/decisions/{decision_id}/explain", explain_decision)
    return app


def _param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_FILTER_PARAMS = [
    _param("namespace", "Agent namespace."),
    _param("workload", "Agent workload (Deployment, Job, ... name)."),
    _param("pod", "Pod name."),
    _param("run_id", "Agent run id."),
    _param("chain_id", "Chain id (namespace/pod/run_id)."),
    _param("decision", "allow or deny.", {"type": "string", "enum": ["allow", "deny"]}),
    _param(
        "failure_type",
        "Halt failure type.",
        {"type": "string", "enum": ["EXHAUSTION", "STAGNATION", "OVERRISK", "SAFETY", "EXTERNAL"]},
    ),
    _param("code", "Reason code, e.g. tokens_exhausted."),
    _param("tool", "Tool name."),
    _param("kind", "llm, mcp, http or connection."),
    _param("phase", "intent, outcome or connection."),
    _param("since", "Records at or after this time (ISO 8601 or epoch seconds)."),
    _param("until", "Records before this time (ISO 8601 or epoch seconds)."),
]
_PAGE_PARAMS = [
    _param("limit", f"Page size, 1..{MAX_LIMIT} (default 100).", {"type": "integer"}),
    _param("cursor", "next_cursor of the previous page."),
    _param(
        "order",
        "asc (default) or desc by time; chain: each chain in sequence order "
        "(the order the sidecar committed the records in, what a run's history needs).",
        {"type": "string", "enum": list(get_args(Order)), "default": "asc"},
    ),
]
_ERROR = {
    "description": "Error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_PAGE = {
    "description": "A page of records",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RecordPage"}}},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "haltgate audit API",
        "version": "1",
        "description": "Read-only access to the haltgate audit trail.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            },
            "Record": {
                "type": "object",
                "description": "An audit record (docs/audit.md).",
                "additionalProperties": True,
            },
            "Explanation": {
                "type": "object",
                "required": ["decision", "replayed", "match"],
                "additionalProperties": True,
                "properties": {
                    "decision_id": {"type": "string"},
                    "decision": {"type": "object", "description": "What the record says."},
                    "policy": {"type": ["string", "null"], "description": "Policy sha256."},
                    "stages": {"type": "array", "items": {"type": "object"}},
                    "decided_by": {"type": ["string", "null"]},
                    "recorded": {"type": ["object", "null"]},
                    "replayed": {
                        "type": ["object", "null"],
                        "description": "The engine's re-derived decision, with the "
                        "budget before it and the event.",
                    },
                    "match": {"type": "boolean"},
                    "mismatches": {"type": "array", "items": {"type": "string"}},
                },
            },
            "RecordPage": {
                "type": "object",
                "properties": {
                    "records": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
                    "next_cursor": {"type": ["string", "null"]},
                },
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/records": {
            "get": {
                "summary": "Filtered audit records, cursor-paginated.",
                "parameters": _FILTER_PARAMS + _PAGE_PARAMS,
                "responses": {"200": _PAGE, "400": _ERROR, "401": _ERROR},
            }
        },
        "/v1/runs/{run_id}/records": {
            "get": {
                "summary": "Execution history of one agent run.",
                "parameters": [
                    {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ]
                + [p for p in _FILTER_PARAMS if p["name"] != "run_id"]
                + _PAGE_PARAMS,
                "responses": {"200": _PAGE, "400": _ERROR, "401": _ERROR},
            }
        },
        "/v1/costs": {
            "get": {
                "summary": "Cost, calls, refusals and tokens per agent.",
                "parameters": _FILTER_PARAMS,
                "responses": {"200": {"description": "Per-agent totals"}, "401": _ERROR},
            }
        },
        "/v1/verify": {
            "get": {
                "summary": "Verify hash chains.",
                "parameters": [
                    _param("chain_id", "Only this chain."),
                    _FILTER_PARAMS[-2],
                    _FILTER_PARAMS[-1],
                ],
                "responses": {
                    "200": {"description": "Verification report (ok, problems)"},
                    "401": _ERROR,
                },
            }
        },
        "/v1/decisions/{decision_id}/explain": {
            "get": {
                "summary": "Explain one decision and re-derive it from its audit record.",
                "description": "The stages the call went through, the rule or budget that "
                "decided, the budget numbers (used/reserved/limit) and the "
                "decision the engine re-derives from the recorded inputs "
                "(docs/audit.md). The policy the record names must be one the "
                "server was started with (--policy).",
                "parameters": [
                    {
                        "name": "decision_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "Explanation",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Explanation"}
                            }
                        },
                    },
                    "401": _ERROR,
                    "404": _ERROR,
                    "422": {
                        "description": "Not replayable here (not_replayable, policy_not_found, "
                        "engine_not_replayable, price_table_mismatch)",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Database reachable.",
                "security": [],
                "responses": {"200": {"description": "ok"}, "503": _ERROR},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1"}},
            }
        },
    },
}
