"""Fixtures of the sidecar tests: stand-in upstreams and a sidecar on random loopback ports.

``sidecar_factory(policy_extra=..., **settings)`` starts a :class:`Sidecar` whose policy
names the stand-ins ``llm`` (OpenAI), ``claude`` (Anthropic), ``mcp`` and ``api``; it
returns a :class:`Running` with the explicit/admin/metrics base URLs, the audit sink and
the policy file (rewrite it to test hot reload).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from haltgate.governance.audit import MemoryAuditSink
from haltgate.sidecar.server import Sidecar
from haltgate.sidecar.startup import HTTP_SERVERS, Listen, SidecarSettings
from haltgate.testbed.standins import RECORDED, Recorded, http_api, llm, mcp, serve

ADMIN_TOKEN = "test-admin-token-0123456789"


@dataclass
class Standins:
    llm: str
    mcp: str
    api: str
    apps: dict[str, web.Application]

    def received(self, name: str) -> Recorded:
        return self.apps[name][RECORDED]


@contextlib.asynccontextmanager
async def serving_standins() -> AsyncIterator[Standins]:
    """The stand-in LLM, MCP server and HTTP API on loopback ports, stopped on exit."""
    apps = {"llm": llm.create_app(), "mcp": mcp.create_app(), "api": http_api.create_app()}
    runners: list[web.AppRunner] = []
    urls = {}
    try:
        for name, app in apps.items():
            runner, url = await serve(app)
            runners.append(runner)
            urls[name] = url
        yield Standins(urls["llm"], urls["mcp"], urls["api"], apps)
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.fixture
async def standins() -> AsyncIterator[Standins]:
    async with serving_standins() as s:
        yield s


OPA_TEST_TIMEOUT_MS = 5000
"""OPA's decision timeout in these tests' policies unless a test sets its own."""


def base_policy(s: Standins) -> dict[str, Any]:
    """A policy allowing the stand-ins, with generous budgets."""
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "test-policy", "namespace": "agents"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "upstreams": [
                {"name": "llm", "url": s.llm, "kind": "llm", "provider": "openai"},
                {"name": "claude", "url": s.llm, "kind": "llm", "provider": "anthropic"},
                {"name": "mcp", "url": s.mcp + "/mcp", "kind": "mcp"},
                {"name": "api", "url": s.api, "kind": "http"},
            ],
            "pricing": {"unknownModel": "default", "default": {"input": 1.0, "output": 2.0}},
            "tools": {
                "default": "deny",
                "rules": [
                    {"name": "llm", "action": "allow", "kind": "llm"},
                    {
                        "name": "mcp-tools",
                        "action": "allow",
                        "kind": "mcp",
                        "mcpTools": ["echo", "add", "read_file", "search"],
                    },
                    {
                        "name": "no-delete-tool",
                        "action": "deny",
                        "kind": "mcp",
                        "mcpTools": ["delete_file"],
                    },
                    {
                        "name": "api-read",
                        "action": "allow",
                        "kind": "http",
                        "methods": ["GET", "POST"],
                    },
                ],
            },
        },
    }


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Running:
    sidecar: Sidecar
    explicit: str
    admin: str
    metrics: str
    audit: MemoryAuditSink
    policy_path: Path

    def write_policy(self, doc: dict[str, Any]) -> None:
        tmp = self.policy_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(doc))
        tmp.replace(self.policy_path)


SidecarFactory = Callable[..., Awaitable[Running]]


@pytest.fixture
def http_server() -> str | None:
    """The HTTP server (proxy paths) of the sidecars a test starts (None: the default).
    A module runs on both with ``http_server = both_http_servers`` (see below)."""
    return None


@pytest.fixture(params=HTTP_SERVERS)
def both_http_servers(request: pytest.FixtureRequest) -> str:
    """Assign to ``http_server`` in a test module to run its tests on each server."""
    return str(request.param)


@pytest.fixture
async def sidecar_factory(
    standins: Standins, tmp_path: Path, http_server: str | None
) -> AsyncIterator[SidecarFactory]:
    started: list[Sidecar] = []

    async def make(policy_extra: dict[str, Any] | None = None, **settings: Any) -> Running:
        doc = merge(base_policy(standins), policy_extra or {})
        opa = doc["spec"].get("opa")
        if isinstance(opa, dict):
            # These tests are about OPA's decisions, not its timeout: the product's 50 ms
            # default is for a warm OPA beside the sidecar, and on a loaded test machine a
            # first decision can take longer (fail closed: a flaky refusal).
            opa.setdefault("timeoutMs", OPA_TEST_TIMEOUT_MS)
        policy_path = tmp_path / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(doc))
        token = tmp_path / "admin-token"
        token.write_text(ADMIN_TOKEN + "\n")
        audit = MemoryAuditSink()
        if http_server is not None:
            settings.setdefault("http_server", http_server)
        cfg = SidecarSettings(
            policy_path=policy_path,
            admin_token_file=token,
            state_dir=settings.pop("state_dir", tmp_path / "state"),
            explicit=Listen("127.0.0.1", 0),
            admin=Listen("127.0.0.1", 0),
            metrics=Listen("127.0.0.1", 0),
            reload_interval=settings.pop("reload_interval", 0.1),
            **settings,
        )
        sidecar = Sidecar(cfg, audit=audit)
        await sidecar.start()
        started.append(sidecar)
        urls = {k: f"http://{h}:{p}" for k, (h, p) in sidecar.addresses.items()}
        return Running(
            sidecar, urls["explicit"], urls["admin"], urls["metrics"], audit, policy_path
        )

    yield make
    for sidecar in started:
        await sidecar.stop()


@pytest.fixture
def opa_server(opa_binary: Path, tmp_path: Path) -> Iterator[str]:
    """A real OPA server (the Go-built binary) for one test; yields its URL."""
    from tests.policy.conftest import start_opa

    server = start_opa(opa_binary, tmp_path / "opa.log")
    try:
        yield server.url
    finally:
        server.process.stop(timeout=5)
