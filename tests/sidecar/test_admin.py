"""Admin API: bearer token, status, budgets, halt, lift and reset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.sidecar.conftest import ADMIN_TOKEN, SidecarFactory, Standins

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


async def admin(
    method: str, url: str, headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(
            method, url, headers=headers or {}, data=None if body is None else orjson.dumps(body)
        ) as r,
    ):
        return r.status, await r.json()


async def test_token_required(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": ADMIN_TOKEN},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
    ):
        for method, path in (
            ("GET", "/status"),
            ("GET", "/budgets"),
            ("POST", "/halt"),
            ("POST", "/lift"),
            ("POST", "/reset"),
            ("GET", "/nothing-here"),
        ):
            status, body = await admin(method, sc.admin + path, headers)
            assert status == 401, (method, path, headers)
            assert body["error"]["code"] == "unauthorized"
    status, body = await admin("GET", sc.admin + "/readyz")
    assert (status, body) == (200, {"ready": True})


async def test_status_and_budgets(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory({"spec": {"budgets": {"calls": {"limit": 10}}}})
    async with aiohttp.ClientSession() as s:
        async with s.post(sc.explicit + "/llm/v1/chat/completions", json=CHAT) as r:
            assert r.status == 200
    status, body = await admin("GET", sc.admin + "/status", AUTH)
    assert status == 200
    assert body["ready"] is True and body["halted"] is None
    assert body["policy"]["name"] == "test-policy" and body["policy"]["valid"] is True
    assert body["decisions"]["allow"] == 1
    status, body = await admin("GET", sc.admin + "/budgets", AUTH)
    assert status == 200
    assert body["budget"]["calls"]["used"] == 1
    assert body["budget"]["calls"]["limit"] == 10


async def test_halt_and_reset(sidecar_factory: SidecarFactory, standins: Standins) -> None:
    sc = await sidecar_factory()
    status, body = await admin(
        "POST", sc.admin + "/halt", AUTH, {"message": "stop now", "actor": "ops"}
    )
    assert status == 200 and body["halted"] is True
    async with aiohttp.ClientSession() as s:
        async with s.post(sc.explicit + "/llm/v1/chat/completions", json=CHAT) as r:
            assert r.status == 423
            error = (await r.json())["error"]
    assert error["type"] == "EXTERNAL" and error["code"] == "external_halt"
    assert not standins.received("llm").requests
    status, body = await admin("GET", sc.admin + "/status", AUTH)
    assert body["halted"]["failure_type"] == "EXTERNAL"
    old_run = body["agent"]["run_id"]
    status, body = await admin("POST", sc.admin + "/reset", AUTH, {"actor": "ops"})
    assert status == 200 and body["reset"] is True and body["run_id"] != old_run
    async with aiohttp.ClientSession() as s:
        async with s.post(sc.explicit + "/llm/v1/chat/completions", json=CHAT) as r:
            assert r.status == 200


async def test_lift_ends_an_external_halt_and_keeps_the_run(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """Issue 16: lifting a halt drill must not hand the agent a fresh budget."""
    sc = await sidecar_factory({"spec": {"budgets": {"calls": {"limit": 10}}}})
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.post(sc.explicit + "/llm/v1/chat/completions", json=CHAT) as r:
                assert r.status == 200
    _, before = await admin("GET", sc.admin + "/status", AUTH)
    run_id = before["agent"]["run_id"]
    await admin(
        "POST",
        sc.admin + "/halt",
        AUTH,
        {"message": "drill", "actor": "ops", "code": "external_halt"},
    )
    # A lift for another code leaves this halt alone.
    status, body = await admin("POST", sc.admin + "/lift", AUTH, {"actor": "ops", "code": "other"})
    assert status == 200 and body["lifted"] is False
    assert body["halted"] == {"failure_type": "EXTERNAL", "code": "external_halt"}
    status, body = await admin(
        "POST", sc.admin + "/lift", AUTH, {"actor": "ops", "code": "external_halt"}
    )
    assert status == 200, body
    assert body["lifted"] is True and body["halted"] is None and body["run_id"] == run_id
    _, after = await admin("GET", sc.admin + "/status", AUTH)
    assert after["agent"]["run_id"] == run_id and after["halted"] is None
    _, budgets = await admin("GET", sc.admin + "/budgets", AUTH)
    assert budgets["budget"]["calls"]["used"] == 3  # the run's spend is kept
    async with aiohttp.ClientSession() as s:
        async with s.post(sc.explicit + "/llm/v1/chat/completions", json=CHAT) as r:
            assert r.status == 200
    _, budgets = await admin("GET", sc.admin + "/budgets", AUTH)
    assert budgets["budget"]["calls"]["used"] == 4
    # Nothing to lift: idempotent.
    status, body = await admin("POST", sc.admin + "/lift", AUTH, {"actor": "ops"})
    assert status == 200 and body["lifted"] is False and body["halted"] is None
    status, body = await admin("POST", sc.admin + "/lift", AUTH, {"code": 3})
    assert status == 400 and body["error"]["code"] == "invalid_request"


async def test_lift_does_not_end_a_budget_halt(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory({"spec": {"budgets": {"calls": {"limit": 1}}}})
    async with aiohttp.ClientSession() as s:
        for expected in (200, 429):
            async with s.post(sc.explicit + "/llm/v1/chat/completions", json=CHAT) as r:
                assert r.status == expected
    status, body = await admin("POST", sc.admin + "/lift", AUTH, {"actor": "ops"})
    assert status == 200 and body["lifted"] is False
    assert body["halted"]["failure_type"] == "EXHAUSTION"
    async with aiohttp.ClientSession() as s:
        async with s.post(sc.explicit + "/llm/v1/chat/completions", json=CHAT) as r:
            assert r.status == 429


async def test_lift_refuses_an_unreadable_state_halt(
    sidecar_factory: SidecarFactory, tmp_path: Path
) -> None:
    """The run's spend was lost with its state file: only an explicit new run clears it."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "budget-state.json.0").write_bytes(b"HGS1 torn slot, no valid record")
    sc = await sidecar_factory({"spec": {"budgets": {"calls": {"limit": 10}}}}, state_dir=state)
    _, body = await admin("GET", sc.admin + "/status", AUTH)
    assert body["halted"]["code"] == "state_unreadable"
    status, body = await admin("POST", sc.admin + "/lift", AUTH, {"actor": "ops"})
    assert status == 409 and "/reset" in body["error"]["message"]
    status, body = await admin("POST", sc.admin + "/reset", AUTH, {"actor": "ops"})
    assert status == 200 and body["reset"] is True


async def test_bad_admin_bodies(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    async with aiohttp.ClientSession() as s:
        async with s.post(sc.admin + "/halt", data=b"{not json", headers=AUTH) as r:
            assert r.status == 400
        async with s.post(sc.admin + "/halt", data=b"[1]", headers=AUTH) as r:
            assert r.status == 400
        async with s.post(sc.admin + "/halt", data=orjson.dumps({"message": 5}), headers=AUTH) as r:
            assert r.status == 400


async def test_token_rotation(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    token_file = sc.sidecar.settings.admin_token_file
    assert token_file is not None
    token_file.write_text("rotated-token-value\n")
    status, _ = await admin("GET", sc.admin + "/status", AUTH)
    assert status == 401
    status, _ = await admin(
        "GET", sc.admin + "/status", {"Authorization": "Bearer rotated-token-value"}
    )
    assert status == 200
    token_file.write_text("")  # an empty token never matches
    status, _ = await admin("GET", sc.admin + "/status", {"Authorization": "Bearer "})
    assert status == 401
