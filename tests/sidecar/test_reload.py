"""Hot reload of the policy file: new versions apply, invalid ones are reported and ignored."""

from __future__ import annotations

import asyncio
import os

import aiohttp

from tests.sidecar.conftest import ADMIN_TOKEN, SidecarFactory, Standins, base_policy, merge

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def status_of(url: str) -> int:
    async with aiohttp.ClientSession() as s, s.post(url, json=CHAT) as r:
        return r.status


async def wait_for(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(100):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_reload_applies_and_invalid_is_kept(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    url = sc.explicit + "/llm/v1/chat/completions"
    assert await status_of(url) == 200

    deny_llm = merge(
        base_policy(standins),
        {
            "spec": {
                "tools": {
                    "rules": [
                        {"name": "only-tiny", "action": "allow", "kind": "llm", "models": ["tiny"]}
                    ]
                }
            }
        },
    )
    sc.write_policy(deny_llm)

    async def denied() -> bool:
        return await status_of(url) == 403

    await wait_for(denied, "the new policy")

    broken = merge(deny_llm, {"spec": {"budgets": {"tokens": {"limit": -1}}}})
    sc.write_policy(broken)

    async def reported() -> bool:
        async with aiohttp.ClientSession() as s, s.get(sc.admin + "/status", headers=AUTH) as r:
            policy = (await r.json())["policy"]
        return not policy["valid"]

    await wait_for(reported, "the invalid policy to be reported")
    async with aiohttp.ClientSession() as s, s.get(sc.admin + "/status", headers=AUTH) as r:
        policy = (await r.json())["policy"]
    assert any(e.startswith("spec.budgets.tokens.limit") for e in policy["last_error"])
    assert await status_of(url) == 403  # the previous (valid) policy still decides

    sc.write_policy(base_policy(standins))

    async def allowed() -> bool:
        return await status_of(url) == 200

    await wait_for(allowed, "the restored policy")
    async with aiohttp.ClientSession() as s, s.get(sc.metrics + "/metrics") as r:
        text = await r.text()
    assert 'haltgate_policy_reloads_total{result="invalid"} 1.0' in text
    assert 'haltgate_policy_reloads_total{result="ok"} 2.0' in text


async def test_configmap_symlink_swap(
    sidecar_factory: SidecarFactory, standins: Standins, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Kubernetes swaps a ..data symlink; the file path itself never changes."""
    import yaml

    sc = await sidecar_factory()
    mount = tmp_path / "mount"
    mount.mkdir()
    v1 = mount / "..2026_v1"
    v1.mkdir()
    (v1 / "policy.yaml").write_text(yaml.safe_dump(base_policy(standins)))
    os.symlink("..2026_v1", mount / "..data")
    os.symlink("..data/policy.yaml", mount / "policy.yaml")
    watcher = sc.sidecar.watcher
    watcher.path = mount / "policy.yaml"
    await watcher.check()
    url = sc.explicit + "/llm/v1/chat/completions"
    assert await status_of(url) == 200

    v2 = mount / "..2026_v2"
    v2.mkdir()
    deny = merge(base_policy(standins), {"spec": {"tools": {"default": "deny", "rules": []}}})
    (v2 / "policy.yaml").write_text(yaml.safe_dump(deny))
    os.symlink("..2026_v2", mount / "..data_tmp")
    os.replace(mount / "..data_tmp", mount / "..data")

    async def denied() -> bool:
        return await status_of(url) == 403

    await wait_for(denied, "the swapped ConfigMap")
