"""``--price-table``: the chart's price table replaces the one shipped in the image."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from haltgate.governance.audit import MemoryAuditSink
from haltgate.governance.pricing import PriceTableError
from haltgate.sidecar.server import Sidecar
from haltgate.sidecar.startup import SidecarSettings
from tests.sidecar.conftest import SidecarFactory

CHAT = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "one two three"}],
    "max_tokens": 5,
}


def _table(path: Path, input_usd: float, output_usd: float) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "version": "2030-01-private",
                "effective": "2030-01-01",
                "currency": "USD",
                "unit": "per_1m_tokens",
                "models": {
                    "gpt-4o-mini": {
                        "input": input_usd,
                        "output": output_usd,
                        "max_output_tokens": 16384,
                    }
                },
            }
        )
    )
    return path


async def _cost_of_one_call(url: str, audit: MemoryAuditSink) -> tuple[float, dict[str, int]]:
    before = len([r for r in audit.records if r.phase == "outcome"])
    async with aiohttp.ClientSession() as s, s.post(url, data=orjson.dumps(CHAT)) as r:
        assert r.status == 200, await r.text()
        await r.read()
    for _ in range(200):  # the outcome is sealed after the answer left
        outcomes = [r for r in audit.records if r.phase == "outcome"]
        if len(outcomes) > before:
            break
        await asyncio.sleep(0.01)
    outcome = outcomes[-1]
    assert outcome.cost_usd is not None and outcome.usage
    return outcome.cost_usd, dict(outcome.usage)


async def test_mounted_price_table_prices_calls_and_reloads(
    sidecar_factory: SidecarFactory, tmp_path: Path
) -> None:
    table = _table(tmp_path / "prices.yaml", 1000.0, 2000.0)
    sc = await sidecar_factory(price_table=table)
    url = sc.explicit + "/llm/v1/chat/completions"
    cost, usage = await _cost_of_one_call(url, sc.audit)
    expected = (usage["input_tokens"] * 1000.0 + usage["output_tokens"] * 2000.0) / 1e6
    assert cost == pytest.approx(expected)  # the shipped table charges ~0.15/0.60 per 1M

    # A new table arrives with the policy ConfigMap: used from the next policy reload on.
    _table(table, 10.0, 20.0)
    doc = yaml.safe_load(sc.policy_path.read_text())
    doc["metadata"]["labels"] = {"touched": "1"}
    sc.write_policy(doc)
    for _ in range(100):
        cost, usage = await _cost_of_one_call(url, sc.audit)
        if cost == pytest.approx((usage["input_tokens"] * 10 + usage["output_tokens"] * 20) / 1e6):
            break
    else:
        raise AssertionError(f"price table not reloaded: last cost {cost}")


def test_malformed_price_table_fails_the_start(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "haltgate.dev/v1alpha1",
                "kind": "GovernancePolicy",
                "metadata": {"name": "p", "namespace": "n"},
                "spec": {},
            }
        )
    )
    bad = tmp_path / "prices.yaml"
    bad.write_text("version: x\nmodels: {gpt: {input: 1}}\n")
    with pytest.raises(PriceTableError):
        Sidecar(SidecarSettings(policy_path=policy, price_table=bad))
