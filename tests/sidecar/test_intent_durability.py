"""No action without its record, in both ``spec.audit.durability`` modes, with faults
injected between forwarding and the intent's fsync.

``strict`` (the default): the intent is durable before the call leaves, so the upstream
never sees a call whose intent is not on disk (checked by the upstream itself, on every
call it serves, and after a kill -9 of a real ``haltgate sidecar`` process); a commit that
fails refuses the call before it leaves. ``overlapped``: the commit overlaps forwarding, so
the upstream may see the call first (the documented weakness), but the answer goes back
only once the intent is durable, and never when its commit fails.

The upstream here is a small aiohttp app of the test (outside the product): on every call
it serves it looks in the sidecar's spool for the call's intent (the policy keeps full
payloads, so the body's marker is in the record).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web

from haltgate.governance.audit import SpoolAuditSink
from haltgate.governance.audit.spool import iter_frames, list_segments, segment_path
from haltgate.governance.audit.spool_settings import SpoolSettings
from haltgate.sidecar.server import Sidecar
from haltgate.sidecar.startup import Listen, SidecarSettings
from haltgate.testbed.standins import serve
from tests.sidecar.cli_process import REPO, explicit_sidecar, sidecar_ports, wait_ready


def intents_on_disk(spool: Path) -> set[str]:
    """Markers of the intent records in the spool's segments now (a torn tail ends a
    segment's valid part, as recovery would cut it)."""
    found: set[str] = set()
    for number in list_segments(spool):
        try:
            data = segment_path(spool, number).read_bytes()
        except FileNotFoundError:
            continue
        frames, _, _ = iter_frames(data, number)
        for frame in frames:
            if frame.is_checkpoint:
                continue
            doc = orjson.loads(frame.data)
            if doc["phase"] == "intent" and isinstance(doc.get("payload"), dict):
                found.add(str(doc["payload"].get("user", "")))
    return found


@dataclass
class Upstream:
    """A chat-completions upstream that notes, per call it serves, whether the call's
    intent was already in the spool when the call arrived."""

    spool: Path
    url: str = ""
    served: dict[str, bool] = field(default_factory=dict)
    arrived: threading.Event = field(default_factory=threading.Event)
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once ``enough`` calls were served."""
    enough: int = 0
    answered: threading.Event = field(default_factory=threading.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        marker = body["user"]
        self.served[marker] = marker in intents_on_disk(self.spool)
        self.arrived.set()
        if self.enough and len(self.served) >= self.enough:
            self.reached.set()
        answer = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"served {marker}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }
        self.answered.set()
        return web.json_response(answer)


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[Upstream]:
    up = Upstream(tmp_path / "audit")
    app = web.Application()
    app.router.add_post("/v1/chat/completions", up.handle)
    runner, up.url = await serve(app)
    yield up
    await runner.cleanup()


def policy(upstream_url: str, durability: str | None) -> dict[str, Any]:
    audit: dict[str, Any] = {"payload": "full"}
    if durability is not None:
        audit["durability"] = durability
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "durability", "namespace": "agents"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "upstreams": [
                {"name": "llm", "url": upstream_url, "kind": "llm", "provider": "openai"}
            ],
            "pricing": {"unknownModel": "default", "default": {"input": 1.0, "output": 2.0}},
            "tools": {"default": "deny", "rules": [{"name": "llm", "action": "allow"}]},
            "audit": audit,
        },
    }


def chat(marker: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "max_tokens": 5,
        "user": marker,
        "messages": [{"role": "user", "content": "hi"}],
    }


async def post(url: str, marker: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.post(url, json=chat(marker)) as r:
        return r.status, await r.json(content_type=None)


Hook = Callable[[], None]


@pytest.fixture
async def sidecar(tmp_path: Path, upstream: Upstream) -> AsyncIterator[Callable[..., Any]]:
    running: list[tuple[Sidecar, SpoolAuditSink]] = []

    async def start(durability: str | None, before_write: Hook | None = None) -> str:
        path = tmp_path / "policy.yaml"
        path.write_text(yaml.safe_dump(policy(upstream.url, durability)))
        sink = SpoolAuditSink(
            settings=SpoolSettings(
                directory=upstream.spool, before_write=before_write, retry_seconds=0.05
            )
        )
        sc = Sidecar(
            SidecarSettings(
                policy_path=path,
                state_dir=tmp_path / "state",
                explicit=Listen("127.0.0.1", 0),
                admin=Listen("127.0.0.1", 0),
                metrics=Listen("127.0.0.1", 0),
            ),
            audit=sink,
        )
        await sc.start()
        running.append((sc, sink))
        host, port = sc.addresses["explicit"]
        return f"http://{host}:{port}/llm/v1/chat/completions"

    yield start
    for sc, sink in running:
        await sc.stop()
        await sink.close()


async def test_strict_every_served_call_had_its_intent_on_disk(
    sidecar: Callable[..., Any], upstream: Upstream
) -> None:
    writers: list[str] = []

    def slow_disk() -> None:
        writers.append(threading.current_thread().name)
        time.sleep(0.003)  # a forward racing the commit would win: the upstream would see it

    url = await sidecar(None, slow_disk)  # strict is the default
    # One at a time: each intent is committed on the event loop's own thread (no hand-off).
    for i in range(5):
        assert (await post(url, f"seq-{i}"))[0] == 200
    assert writers and set(writers) == {threading.main_thread().name}
    # 30 at once: calls in flight together go through the writer thread's group commits.
    writers.clear()
    results = await asyncio.gather(*(post(url, f"burst-{i}") for i in range(30)))
    assert [status for status, _ in results] == [200] * 30
    assert "haltgate-audit-spool" in writers
    assert len(upstream.served) == 35
    assert all(upstream.served.values()), [m for m, ok in upstream.served.items() if not ok]


async def test_strict_failed_commit_refuses_before_anything_leaves(
    sidecar: Callable[..., Any], upstream: Upstream
) -> None:
    def broken_disk() -> None:
        raise OSError(5, "Input/output error")

    url = await sidecar("strict", broken_disk)
    status, body = await post(url, "lost")
    assert (status, body["error"]["code"]) == (503, "audit_unavailable")
    assert upstream.served == {}


async def test_overlapped_forwards_during_the_commit_and_answers_after_it(
    sidecar: Callable[..., Any], upstream: Upstream
) -> None:
    holds: list[bool] = []

    def hold_until_served() -> None:
        # The writer thread (overlapped never commits on the event loop's thread): the
        # intent is written only once the upstream has the call.
        holds.append(upstream.arrived.wait(10))

    url = await sidecar("overlapped", hold_until_served)
    status, body = await post(url, "overlap")
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "served overlap"
    assert holds and holds[0], "the upstream never saw the call while its commit was held"
    # The weakness, as documented: the upstream served a call whose intent was not on
    # disk yet. It is there once the answer is back.
    assert upstream.served == {"overlap": False}
    assert "overlap" in intents_on_disk(upstream.spool)


async def test_overlapped_withholds_the_answer_when_the_commit_fails(
    sidecar: Callable[..., Any], upstream: Upstream
) -> None:
    def fail_after_the_upstream_answered() -> None:
        if not upstream.answered.wait(10):
            return  # (then the assertions below fail)
        raise OSError(28, "No space left on device")

    url = await sidecar("overlapped", fail_after_the_upstream_answered)
    status, body = await post(url, "withheld")
    # The upstream served it (the crash window of overlapped), but its answer never
    # reached the agent: the call is refused as if the audit had failed before it left.
    assert upstream.served == {"withheld": False}
    assert (status, body["error"]["code"]) == (503, "audit_unavailable")
    assert "served withheld" not in orjson.dumps(body).decode()
    assert "withheld" not in intents_on_disk(upstream.spool)


async def test_kill_9_of_the_sidecar_process_leaves_no_served_call_without_its_intent(
    tmp_path: Path, upstream: Upstream
) -> None:
    """The pod's way: ``haltgate sidecar`` (strict, the default) under concurrent load,
    killed with SIGKILL; every call the upstream served has its intent in the spool."""
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy(upstream.url, None)))
    ports = sidecar_ports()
    proc = await asyncio.create_subprocess_exec(
        *explicit_sidecar(
            path,
            ports,
            "--state-dir",
            str(tmp_path / "state"),
            "--audit-dir",
            str(upstream.spool),
        ),
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{ports['explicit']}/llm/v1/chat/completions"
    cut_off = 0

    async def agent(n: int) -> None:
        nonlocal cut_off
        async with aiohttp.ClientSession() as s:
            for i in range(10_000):
                try:
                    async with s.post(url, json=chat(f"a{n}-{i}")) as r:
                        await r.read()
                except aiohttp.ClientError:
                    cut_off += 1  # a call in flight when the sidecar died
                    return

    try:
        await wait_ready(f"http://127.0.0.1:{ports['admin']}/readyz", proc)
        agents = [asyncio.ensure_future(agent(n)) for n in range(6)]
        upstream.enough = 300
        await asyncio.wait_for(upstream.reached.wait(), 30)
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: calls in every stage
        await proc.wait()
        await asyncio.wait_for(asyncio.gather(*agents), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert len(upstream.served) >= 300, "too few calls before the kill to mean anything"
    assert cut_off > 0, "no call was in flight at the kill"
    on_disk = intents_on_disk(upstream.spool)
    missing = sorted(set(upstream.served) - on_disk)
    assert not missing, f"served without an intent after kill -9: {missing[:10]}"
    # And at the moment each call arrived, its intent was already there.
    assert all(upstream.served.values())
