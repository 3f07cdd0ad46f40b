"""AutoGen 0.7 (real autogen-core, autogen-agentchat, autogen-ext) against a sidecar."""

from __future__ import annotations

from pathlib import Path

import pytest

try:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_core import AgentId, DropMessage
    from autogen_core.models import UserMessage
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    from haltgate.sdk.autogen import (
        HaltgateChatCompletionClient,
        HaltgateInterventionHandler,
        openai_chat_client,
    )
except ImportError as e:  # pragma: no cover - CI installs the test extra, which has them
    pytest.skip(f"autogen integration not importable ({e}); install 'haltgate[autogen]'",
                allow_module_level=True)

from haltgate.governance.inprocess import LocalGovernance
from haltgate.sdk import ExhaustionError
from haltgate.sidecar.pipeline import PipelineSettings
from tests.sdk.conftest import (
    SidecarFactory,
    Standins,
    budgets_policy,
    llm_requests,
    refusals,
    write_policy,
)

MAX_TURNS = 10


async def agent_turns(agent: AssistantAgent, turns: int = MAX_TURNS) -> int:
    """Run the agent turn after turn (bounded); returns the turns completed."""
    done = 0
    for i in range(turns):
        await agent.run(task=f"step {i}: continue the work")
        done += 1
    return done


async def test_agent_stops_on_exhaustion_without_retry(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(budgets_policy({"calls": {"limit": 3}}))
    warnings: list[tuple[str, ...]] = []
    client = openai_chat_client("llm", model="gpt-4o-mini", url=sc.explicit, max_retries=2,
                                on_warning=warnings.append)
    agent = AssistantAgent("worker", model_client=client)
    with pytest.raises(ExhaustionError) as info:
        await agent_turns(agent)
    assert (info.value.code, info.value.status) == ("calls_exhausted", 429)
    assert info.value.decision_id
    assert llm_requests(standins) == 3
    assert refusals(sc, "calls_exhausted") == 1  # the OpenAI SDK did not retry
    assert client.halt is info.value
    assert warnings == [("calls",)]  # read from x-haltgate-budget-warning
    # Halted: the next turn fails at once, nothing is sent.
    with pytest.raises(ExhaustionError):
        await agent.run(task="once more")
    assert refusals(sc, "calls_exhausted") == 1


async def test_streaming_halt_surfaces_as_exhaustion(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    # A price without max_output_tokens: the call reserves the sidecar's default (2), not
    # the model's real maximum, so the stream can outgrow its reservation.
    policy = budgets_policy({"tokens": {"limit": 2000}})
    policy["spec"]["pricing"] = {"models": {"gpt-4o-mini": {"input": 0.15, "output": 0.6}}}
    sc = await sidecar_factory(policy, pipeline=PipelineSettings(default_max_output_tokens=2))
    client = openai_chat_client("llm", model="gpt-4o-mini", url=sc.explicit,
                                default_headers={"x-standin-tokens": "4096"})
    parts: list[str] = []
    with pytest.raises(ExhaustionError) as info:
        async for item in client.create_stream([UserMessage(content="write", source="user")]):
            assert isinstance(item, str)
            parts.append(item)
            assert len(parts) < 5000
    assert info.value.code == "tokens_exhausted"
    assert parts and parts[0].startswith("tok0")
    assert llm_requests(standins) == 1


async def test_streaming_agent_stops(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory(budgets_policy({"calls": {"limit": 1}}))
    client = openai_chat_client("llm", model="gpt-4o-mini", url=sc.explicit)
    agent = AssistantAgent("worker", model_client=client, model_client_stream=True)
    with pytest.raises(ExhaustionError):
        await agent_turns(agent)


async def test_intervention_handler_drops_messages_after_halt(
    sidecar_factory: SidecarFactory,
) -> None:
    sc = await sidecar_factory(budgets_policy({"calls": {"limit": 1}}))
    client = openai_chat_client("llm", model="gpt-4o-mini", url=sc.explicit)
    handler = HaltgateInterventionHandler(client)
    recipient = AgentId("worker", "default")
    msg = object()
    assert await handler.on_send(msg, message_context=None, recipient=recipient) is msg  # type: ignore[arg-type]
    await client.create([UserMessage(content="one", source="user")])
    with pytest.raises(ExhaustionError):
        await client.create([UserMessage(content="two", source="user")])
    assert await handler.on_send(msg, message_context=None, recipient=recipient) is DropMessage  # type: ignore[arg-type]
    assert await handler.on_publish(msg, message_context=None) is DropMessage  # type: ignore[arg-type]


async def test_local_fallback_without_sidecar(tmp_path: Path, standins: Standins) -> None:
    policy = write_policy(tmp_path, standins, {"calls": {"limit": 2}})
    inner = OpenAIChatCompletionClient(model="gpt-4o-mini", base_url=standins.llm + "/v1",
                                       api_key="x")
    client = HaltgateChatCompletionClient(inner, local=LocalGovernance(policy))
    assert "BYPASSABLE" in repr(client)
    agent = AssistantAgent("worker", model_client=client)
    with pytest.raises(ExhaustionError) as info:
        await agent_turns(agent)
    assert info.value.code == "calls_exhausted"
    assert llm_requests(standins) == 2  # refused before the third call was made
    assert client.local is not None
    assert client.local.budgets()["calls"]["used"] == 2
