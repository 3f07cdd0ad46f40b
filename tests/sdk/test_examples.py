"""docs/examples/{langchain,autogen}_agent.py run through a sidecar and are halted by a budget."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest
import yaml

from haltgate.governance.validation import load_policy_file
from tests.sdk.conftest import SidecarFactory, Standins, budgets_policy, llm_requests

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
POLICY = EXAMPLES / "agent-policy.yaml"
TIMEOUT_SECONDS = 60


def test_example_policy_is_valid() -> None:
    policy = load_policy_file(str(POLICY))
    assert policy.spec.budgets.calls is not None


@pytest.mark.parametrize(
    ("script", "module"),
    [
        ("langchain_agent.py", "langchain_openai"),
        ("autogen_agent.py", "autogen_ext"),
    ],
)
async def test_example_is_halted_by_the_budget(
    script: str,
    module: str,
    sidecar_factory: SidecarFactory,
    standins: Standins,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In process (the sidecar runs in this event loop): a subprocess would spend seconds
    # importing the frameworks again.
    if importlib.util.find_spec(module) is None:  # pragma: no cover
        pytest.skip(f"{module} not installed; install 'haltgate[test]'")
    budgets = yaml.safe_load(POLICY.read_text())["spec"]["budgets"]
    limit = budgets["calls"]["limit"]
    sc = await sidecar_factory(budgets_policy(budgets))
    monkeypatch.setenv("HALTGATE_URL", sc.explicit)
    monkeypatch.setenv("HALTGATE_ALIAS", "llm")
    monkeypatch.setenv("MAX_STEPS", str(limit + 5))
    spec = importlib.util.spec_from_file_location(f"example_{script[:-3]}", EXAMPLES / script)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert await asyncio.wait_for(example.main(), TIMEOUT_SECONDS) == 0
    text = capsys.readouterr().out
    assert "halted by haltgate: EXHAUSTION calls_exhausted" in text
    assert text.count("step ") == limit
    assert "budget warning: ('calls',)" in text
    assert llm_requests(standins) == limit
