"""Drift through the real sidecar: a stand-in upstream that starts failing makes the run
halt (OVERRISK, behaviour_drift) under ``spec.drift.action: halt``; the gauges are on
/metrics; the baselines survive a restart; a reset of the drift halt accepts the change."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from haltgate.sdk.errors import HaltError, OverriskError, error_from_body
from tests.sidecar.conftest import ADMIN_TOKEN, SidecarFactory, Standins, base_policy, merge

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

DRIFT = {
    "spec": {
        "drift": {
            "action": "halt",
            "windowCalls": 10,
            "minSamples": 40,
            "sustain": 2,
            "dimensions": [{"name": "error_rate"}, {"name": "tool_mix"}],
        }
    }
}
MAX_CALLS = 200
"""Bound of every loop that waits for the detector."""


async def call(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as r:
        raw = await r.read()
    try:
        return r.status, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return r.status, raw.decode()


async def admin(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(
            method, url, headers=AUTH, data=None if body is None else orjson.dumps(body)
        ) as r,
    ):
        return r.status, await r.json()


async def steady(session: aiohttp.ClientSession, api: str, n: int) -> None:
    for i in range(n):
        status, _ = await call(session, f"{api}/items/{i % 2 + 1}")
        assert status == 200


async def test_an_upstream_that_starts_failing_halts_the_run(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(DRIFT)
    api = sc.explicit + "/api"
    async with aiohttp.ClientSession() as s:
        await steady(s, api, 60)
        status, body = await admin("GET", sc.admin + "/drift")
        assert status == 200
        assert body["dimensions"]["error_rate"]["baseline_samples"] >= 40
        assert body["dimensions"]["error_rate"]["sustained"] is False
        # The agent's behaviour changes: every call now fails upstream (500).
        halted_after = None
        for i in range(MAX_CALLS):
            status, body = await call(s, f"{api}/status/500")
            if status == 403:
                halted_after = i
                break
            assert status == 500, body
        assert halted_after is not None, "no halt within the bound"
        # Two windows of 10 calls over the threshold: halted after about 20 failures.
        assert 15 <= halted_after <= 40, halted_after
        err = body["error"]
        assert (err["type"], err["code"]) == ("OVERRISK", "behaviour_drift")
        assert "error_rate" in err["message"]
        # The SDK surfaces it as a halt of the run (OVERRISK), not a one-call refusal.
        surfaced = error_from_body(body, status=403)
        assert isinstance(surfaced, OverriskError) and isinstance(surfaced, HaltError)
        assert surfaced.code == "behaviour_drift"
        # Halted: even the calls that used to pass are refused now.
        status, body = await call(s, f"{api}/items/1")
        assert (status, body["error"]["code"]) == (403, "behaviour_drift")

        async with s.get(sc.metrics + "/metrics") as r:
            text = await r.text()
        assert 'haltgate_drift_sustained{dimension="error_rate"' in text
        assert 'haltgate_halts_total{code="behaviour_drift",failure="OVERRISK"' in text
        # The audit trail holds the refusals with their code.
        assert any(r.code == "behaviour_drift" for r in sc.audit.records)

        # A restart keeps the halt and the baselines.
        await sc.sidecar.stop()
        sc = await sidecar_factory(DRIFT)
        status, body = await call(s, f"{sc.explicit}/api/items/1")
        assert (status, body["error"]["code"]) == (403, "behaviour_drift")
        status, body = await admin("GET", sc.admin + "/drift")
        assert body["dimensions"]["error_rate"]["baseline_samples"] >= 40

        # The operator accepts the change: the reset also forgets the baselines.
        status, _ = await admin("POST", sc.admin + "/reset", {"actor": "test"})
        assert status == 200
        status, body = await admin("GET", sc.admin + "/drift")
        assert body["dimensions"]["error_rate"]["baseline_samples"] == 0
        status, _ = await call(s, f"{sc.explicit}/api/status/500")
        assert status == 500  # learning the new normal again, not halted


async def test_a_steady_agent_is_never_halted_and_warn_never_halts(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    warn = {"spec": {"drift": {**DRIFT["spec"]["drift"], "action": "warn"}}}
    sc = await sidecar_factory(warn)
    api = sc.explicit + "/api"
    async with aiohttp.ClientSession() as s:
        await steady(s, api, 120)
        status, body = await admin("GET", sc.admin + "/drift")
        assert body["dimensions"]["error_rate"]["score"] == 0.0
        for _ in range(60):
            status, _ = await call(s, f"{api}/status/500")
            assert status == 500  # warn: never refused
        status, body = await admin("GET", sc.admin + "/drift")
        assert body["dimensions"]["error_rate"]["sustained"] is True
        # Accept it without a halt.
        status, _ = await admin("POST", sc.admin + "/drift/rebaseline", {"actor": "test"})
        assert status == 200
        status, body = await admin("GET", sc.admin + "/drift")
        assert body["dimensions"]["error_rate"]["baseline_samples"] == 0


async def test_no_drift_section_exports_nothing(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    async with aiohttp.ClientSession() as s:
        await steady(s, sc.explicit + "/api", 5)
        async with s.get(sc.metrics + "/metrics") as r:
            assert "haltgate_drift" not in await r.text()
    status, body = await admin("GET", sc.admin + "/drift")
    assert (status, body["error"]["code"]) == (404, "drift_not_configured")


async def test_a_policy_reload_turns_drift_on_and_off(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    status, body = await admin("GET", sc.admin + "/drift")
    assert status == 404
    sc.write_policy(merge(base_policy(standins), DRIFT))
    for _ in range(100):  # reload interval 0.1 s; bounded wait
        status, body = await admin("GET", sc.admin + "/drift")
        if status == 200:
            break
        await asyncio.sleep(0.05)
    assert status == 200 and body["action"] == "halt"
    async with aiohttp.ClientSession() as s:
        await steady(s, sc.explicit + "/api", 20)
    status, body = await admin("GET", sc.admin + "/drift")
    assert body["dimensions"]["error_rate"]["baseline_samples"] == 20
    # New settings keep the baselines.
    changed = {"spec": {"drift": {**DRIFT["spec"]["drift"], "sustain": 5}}}
    sc.write_policy(merge(base_policy(standins), changed))
    for _ in range(100):
        status, body = await admin("GET", sc.admin + "/drift")
        if body["sustain"] == 5:
            break
        await asyncio.sleep(0.05)
    assert body["sustain"] == 5
    assert body["dimensions"]["error_rate"]["baseline_samples"] == 20
    sc.write_policy(base_policy(standins))
    for _ in range(100):
        status, body = await admin("GET", sc.admin + "/drift")
        if status == 404:
            break
        await asyncio.sleep(0.05)
    assert status == 404
