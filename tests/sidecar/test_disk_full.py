"""Degraded, visible, self-healing (issue 16, item 5), on a real full filesystem.

A size-limited tmpfs is mounted for each test (root, as CI runs); filling it makes the
kernel answer ENOSPC to the sidecar's spool and state writes and to the shipper. Then:
calls are refused (fail closed), ``/readyz`` says why, and once space returns the sidecar
resumes by itself, without a restart and without a gap in the audit chain; a sidecar
(re)started on the full volume comes up refusing instead of crashing; the shipper keeps
draining the spool (it is what frees the space).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from haltgate.governance.audit import SpoolAuditSink
from haltgate.governance.audit.shipper import Shipper, ShipperSettings
from haltgate.governance.audit.spool import iter_frames, list_segments, segment_path
from haltgate.governance.audit.verify import verify_database
from haltgate.sidecar.server import Sidecar
from haltgate.sidecar.startup import Listen, SidecarSettings
from haltgate.testbed.smallfs import fill, small_volume
from tests.audit.conftest import AuditDatabase, audit_db  # noqa: F401 (fixture)
from tests.audit.helpers import make_record
from tests.sidecar.conftest import ADMIN_TOKEN, Standins, base_policy

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    with small_volume(tmp_path / "vol", 4 * 1024 * 1024) as path:
        yield path


class Started:
    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        urls = {k: f"http://{h}:{p}" for k, (h, p) in sidecar.addresses.items()}
        self.explicit, self.admin = urls["explicit"], urls["admin"]


@pytest.fixture
async def start(standins: Standins, tmp_path: Path) -> AsyncIterator[Any]:
    running: list[Sidecar] = []

    async def make(volume: Path) -> Started:
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump(base_policy(standins)))
        token = tmp_path / "admin-token"
        token.write_text(ADMIN_TOKEN)
        settings = SidecarSettings(
            policy_path=policy,
            admin_token_file=token,
            state_dir=volume / "state",
            audit_dir=volume / "audit",
            explicit=Listen("127.0.0.1", 0),
            admin=Listen("127.0.0.1", 0),
            metrics=Listen("127.0.0.1", 0),
        )
        sidecar = Sidecar(settings)  # the real spool, not the memory sink
        await sidecar.start()
        running.append(sidecar)
        return Started(sidecar)

    yield make
    for sidecar in running:
        await sidecar.stop()


async def call(sc: Started) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(sc.explicit + "/llm/v1/chat/completions", json=CHAT) as r,
    ):
        return r.status, r.headers.get("x-haltgate-code", "")


async def readyz(sc: Started) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(sc.admin + "/readyz") as r:
        return r.status, orjson.loads(await r.read())


async def until_ready(sc: Started, limit: float = 30.0) -> None:
    for _ in range(int(limit / 0.1)):
        status, _ = await readyz(sc)
        if status == 200:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"sidecar not ready again after {limit}s: {await readyz(sc)}")


def spooled_chains(spool: Path) -> dict[str, list[int]]:
    """Sequence numbers per chain, as a reader finds them (and no bad frame)."""
    chains: dict[str, list[int]] = {}
    for number in list_segments(spool):
        frames, _, reason = iter_frames(segment_path(spool, number).read_bytes(), number)
        assert reason is None, reason
        for frame in frames:
            if not frame.is_checkpoint:
                doc = orjson.loads(frame.data)
                chains.setdefault(doc["chain_id"], []).append(doc["seq"])
    return chains


async def test_full_disk_refuses_unready_then_heals_by_itself(
    volume: Path,
    start: Any,
    audit_db: AuditDatabase,  # noqa: F811
) -> None:
    sc = await start(volume)
    assert await call(sc) == (200, "")
    assert (await readyz(sc))[0] == 200
    # The call's outcome record lingers before it is written (20 ms): let it reach the
    # segment first, or its write may be the one that finds the disk full (then the
    # reason is audit_unavailable, also unready, but not what this step checks).
    for _ in range(100):
        if sum(len(seqs) for seqs in spooled_chains(volume / "audit").values()) >= 2:
            break
        await asyncio.sleep(0.05)
    filler = fill(volume)
    status, body = await readyz(sc)
    assert status == 503 and body["ready"] is False and body["reason"] == "disk_full"
    # Appends may still land in the slack of a page the segment already has; the first
    # write that needs a new page fails, and from then on every call is refused.
    for _ in range(200):
        if (await call(sc))[0] == 503:
            break
    refusals = [await call(sc) for _ in range(5)]
    assert all(s == 503 for s, _ in refusals), refusals
    assert {c for _, c in refusals} <= {"audit_unavailable", "state_persist_failed"}
    status, body = await readyz(sc)
    assert status == 503 and body["reason"] in ("audit_unavailable", "disk_full")
    filler.unlink()  # space returns; no restart
    await until_ready(sc)
    assert await call(sc) == (200, "")
    # No gap: every chain runs 1..n as a reader (and the shipper) finds it.
    await sc.sidecar.stop()
    spool = volume / "audit"
    for seqs in spooled_chains(spool).values():
        assert seqs == list(range(1, len(seqs) + 1))
    assert not list(spool.glob("*.torn-*"))
    shipper = Shipper(ShipperSettings(directory=spool, dsn=audit_db.writer))
    try:
        assert shipper.drain(timeout=60) > 0
    finally:
        shipper.close()
    report = verify_database(audit_db.reader)
    assert report.ok, report.problems


async def test_restart_on_a_full_volume_starts_refusing_but_alive(volume: Path, start: Any) -> None:
    sc = await start(volume)
    assert await call(sc) == (200, "")
    await sc.sidecar.stop()
    spool = volume / "audit"
    newest = segment_path(spool, list_segments(spool)[-1])
    with newest.open("ab") as f:
        f.write(b"\x07\x00\x00\x00torn")  # what a crash mid-write leaves
    filler = fill(volume)
    sc = await start(volume)  # recovery cannot write the torn tail aside: not a crash
    status, body = await readyz(sc)
    assert status == 503 and body["reason"] == "audit_unavailable"
    assert await call(sc) == (503, "audit_unavailable")
    async with aiohttp.ClientSession() as s, s.get(sc.admin + "/healthz") as r:
        assert r.status == 200  # alive: the liveness probe does not restart it
    filler.unlink()
    await until_ready(sc)
    assert await call(sc) == (200, "")
    assert list(spool.glob("*.torn-*"))  # the torn tail was set aside once space returned
    await sc.sidecar.stop()
    for seqs in spooled_chains(spool).values():
        assert seqs == list(range(1, len(seqs) + 1))


def test_shipper_drains_a_full_volume(volume: Path, audit_db: AuditDatabase) -> None:  # noqa: F811
    """The shipper used to stop on ENOSPC: its position file and heads.json could not be
    written, so it never compacted, and the volume stayed full for good."""
    spool = volume / "audit"
    sink = SpoolAuditSink(spool, segment_bytes=16 * 1024, max_bytes=64 * 1024 * 1024)
    total = 600
    for i in range(total):
        sink.append_blocking(make_record(i, payload_mode="full", payload={"n": "x" * 400}))
    sink.close_blocking()
    segments_before = len(list_segments(spool))
    assert segments_before > 3
    fill(volume)
    shipper = Shipper(ShipperSettings(directory=spool, dsn=audit_db.writer, poll_seconds=0.05))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            shipper.run()
        except BaseException as e:  # what used to kill the shipper thread
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        for _ in range(600):
            if audit_db.count() == total and len(list_segments(spool)) == 1:
                break
            if not thread.is_alive():
                break
            threading.Event().wait(0.05)
    finally:
        shipper.stop()
        thread.join(30)
        shipper.close()
    assert not errors, errors
    assert audit_db.count() == total
    assert len(list_segments(spool)) == 1  # shipped segments removed: space freed
    report = verify_database(audit_db.reader)
    assert report.ok, report.problems
