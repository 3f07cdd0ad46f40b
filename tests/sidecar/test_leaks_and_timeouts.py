"""The smaller items of issue 16 (item 11): a reservation never leaks, a long stream is not
cut by the upstream timeout, leaf minting and the guardrails model stage run off the event
loop. (The per-direction passthrough idle timeout is in test_listeners.py.)"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web

from haltgate.governance.audit import AuditRecord, MemoryAuditSink
from haltgate.governance.policy_base import TLSMode
from haltgate.sidecar import clienthello
from haltgate.sidecar.first_bytes import peek_first_bytes
from haltgate.sidecar.server import Sidecar
from haltgate.sidecar.sse import SSEParser
from haltgate.sidecar.startup import Listen, SidecarSettings
from haltgate.sidecar.tlsmint import CertificateAuthority, LeafMinter
from haltgate.sidecar.transparent import TransparentListener, TransparentSettings
from haltgate.sidecar.transparent_upstreams import TransparentUpstream, UpstreamIndex
from haltgate.testbed.standins import serve
from tests.sidecar.conftest import ADMIN_TOKEN, SidecarFactory, Standins, base_policy, merge

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


# ---------------------------------------------------------------------- reservations


class BrokenIntentSink(MemoryAuditSink):
    """An audit sink with a bug: its next intent raises something that is not an
    AuditError (what any unexpected exception between reserve and forward looks like)."""

    def __init__(self) -> None:
        super().__init__()
        self.break_next = False

    async def intent(self, record: AuditRecord) -> None:
        if self.break_next:
            self.break_next = False
            raise RuntimeError("sink bug")
        await super().intent(record)


@pytest.fixture
async def sidecar_with(standins: Standins, tmp_path: Path) -> AsyncIterator[Any]:
    started: list[Sidecar] = []

    async def make(audit: MemoryAuditSink, extra: dict[str, Any] | None = None) -> Sidecar:
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump(merge(base_policy(standins), extra or {})))
        token = tmp_path / "admin-token"
        token.write_text(ADMIN_TOKEN)
        sidecar = Sidecar(
            SidecarSettings(
                policy_path=policy,
                admin_token_file=token,
                state_dir=tmp_path / "state",
                explicit=Listen("127.0.0.1", 0),
                admin=Listen("127.0.0.1", 0),
                metrics=Listen("127.0.0.1", 0),
            ),
            audit=audit,
        )
        await sidecar.start()
        started.append(sidecar)
        return sidecar

    yield make
    for sidecar in started:
        await sidecar.stop()


async def test_reservation_released_on_an_unexpected_exception(sidecar_with: Any) -> None:
    sink = BrokenIntentSink()
    sc = await sidecar_with(sink, {"spec": {"budgets": {"calls": {"limit": 3}}}})
    host, port = sc.addresses["explicit"]
    url = f"http://{host}:{port}/llm/v1/chat/completions"
    async with aiohttp.ClientSession() as s:
        sink.break_next = True
        async with s.post(url, json=CHAT) as r:
            assert r.status == 500  # a bug answers 500; it must not keep budget
        assert sc.governor.snapshot()["in_flight"] == []
        # The three calls of the budget are all still there.
        for _ in range(3):
            async with s.post(url, json=CHAT) as r:
                assert r.status == 200
        async with s.post(url, json=CHAT) as r:
            assert r.status == 429


# ---------------------------------------------------------------------- upstream timeout


def slow_stream(gaps: list[float]) -> web.Application:
    """An OpenAI-shaped stream: one chunk after each gap (seconds), then [DONE]."""

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for i, gap in enumerate(gaps):
                await asyncio.sleep(gap)
                chunk = {"choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}
                await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
        except ConnectionError:
            pass
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


@pytest.fixture
async def slow_upstream(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    runner, url = await serve(slow_stream(request.param))
    yield url
    await runner.cleanup()


async def _stream(sc: Any, standins: Standins, url: str) -> tuple[bytes, AuditRecord]:
    body = {**CHAT, "stream": True}
    async with (
        aiohttp.ClientSession() as s,
        s.post(sc.explicit + "/slow/v1/chat/completions", json=body) as r,
    ):
        assert r.status == 200
        raw = await r.read()
    for _ in range(200):
        outcomes = [rec for rec in sc.audit.records if rec.phase == "outcome"]
        if outcomes:
            return raw, outcomes[0]
        await asyncio.sleep(0.02)
    raise AssertionError("no outcome record")


def _policy(url: str, standins: Standins) -> dict[str, Any]:
    return {
        "spec": {
            "limits": {"upstreamTimeoutSeconds": 1},
            "upstreams": [
                {"name": "llm", "url": standins.llm, "kind": "llm", "provider": "openai"},
                {"name": "slow", "url": url, "kind": "llm", "provider": "openai"},
            ],
        }
    }


@pytest.mark.parametrize("slow_upstream", [[0.25] * 10], indirect=True)
async def test_long_stream_is_not_cut_by_the_upstream_timeout(
    sidecar_factory: SidecarFactory, standins: Standins, slow_upstream: str
) -> None:
    """A 2.5 s stream that never pauses 1 s: ClientTimeout(total=...) cut it at 1 s and the
    budget counted a failure."""
    sc = await sidecar_factory(_policy(slow_upstream, standins))
    raw, outcome = await _stream(sc, standins, slow_upstream)
    events = SSEParser().feed(raw)
    assert sum(e.data.startswith("{") for e in events) == 10
    assert events[-1].data == "[DONE]"
    assert outcome.decision == "allow" and outcome.code is None
    assert sc.sidecar.governor is not None
    failures = sc.sidecar.governor.snapshot()["budget"].get("consecutive_failures")
    assert failures is None or failures["used"] == 0


@pytest.mark.parametrize("slow_upstream", [[0.0, 2.5]], indirect=True)
async def test_a_silent_stream_is_still_cut(
    sidecar_factory: SidecarFactory, standins: Standins, slow_upstream: str
) -> None:
    sc = await sidecar_factory(_policy(slow_upstream, standins))
    raw, outcome = await _stream(sc, standins, slow_upstream)
    assert b'"code":"upstream_truncated"' in raw
    assert b"w1 " not in raw
    assert outcome.code == "upstream_truncated" and outcome.decision == "error"


# ---------------------------------------------------------------------- off the event loop


class ThreadNotingMinter(LeafMinter):
    """The real minter, noting which thread it mints on."""

    threads: list[str]

    def server_context(self, host: str) -> ssl.SSLContext:
        self.threads.append(threading.current_thread().name)
        return super().server_context(host)


async def test_transparent_leaf_minting_runs_off_the_event_loop(tmp_path: Path) -> None:
    ca = CertificateAuthority.create()
    minter = ThreadNotingMinter(ca)
    minter.threads = []
    listener = TransparentListener(
        protocol_factory=asyncio.Protocol,
        upstreams=lambda: UpstreamIndex(
            [TransparentUpstream("x", "inspect.test", 443, "https", TLSMode.INSPECT)]
        ),
        minter=minter,
        settings=TransparentSettings(check_destination_address=False),
    )
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.setblocking(False)
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert_pem())
    client_ctx = ssl.create_default_context(cafile=str(ca_file))
    loop = asyncio.get_running_loop()
    client = asyncio.ensure_future(
        asyncio.open_connection(
            *lsock.getsockname(), ssl=client_ctx, server_hostname="inspect.test"
        )
    )
    sock, _ = await loop.sock_accept(lsock)
    sock.setblocking(False)
    data = await peek_first_bytes(
        sock, listener.settings.peek_timeout, listener.settings.max_peek_bytes
    )
    hello = clienthello.parse_client_hello(data)
    await listener._route_tls(sock, "10.0.0.1", 443, hello)
    async with asyncio.timeout(10):
        _, writer = await client  # the handshake completed with the minted leaf
    writer.close()
    lsock.close()
    assert minter.threads and all(t != threading.main_thread().name for t in minter.threads)


async def test_guardrails_model_stage_runs_off_the_event_loop(
    sidecar_factory: SidecarFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from haltgate.governance.guardrails import engine

    real = engine._shared_model_scorer()
    threads: list[str] = []

    def noting_scorer(text: str) -> float:
        threads.append(threading.current_thread().name)
        return real(text)

    noting_scorer.thresholds = real.thresholds  # type: ignore[attr-defined]  # calibrated limits
    monkeypatch.setattr(engine, "_shared_model_scorer", lambda: noting_scorer)
    sc = await sidecar_factory(
        {
            "spec": {
                "guardrails": {
                    "promptInjection": {
                        "enabled": True,
                        "model": True,
                        "direction": "both",
                        "action": "block",
                    }
                }
            }
        }
    )
    async with (
        aiohttp.ClientSession() as s,
        s.post(sc.explicit + "/llm/v1/chat/completions", json=CHAT) as r,
    ):
        assert r.status == 200, await r.text()
    assert threads, "the model stage did not run"
    assert all(t.startswith("haltgate-guard-model") for t in threads), threads
