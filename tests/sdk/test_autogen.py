"""AutoGen 0.7 (real autogen-core, autogen-agentchat, autogen-ext) against a sidecar."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

try:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.teams import RoundRobinGroupChat
    from autogen_core import AgentId, DropMessage, SingleThreadedAgentRuntime
    from autogen_core.models import ChatCompletionClient, UserMessage
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    from haltgate.sdk.autogen import (
        HaltgateChatCompletionClient,
        HaltgateInterventionHandler,
        openai_chat_client,
    )
except ImportError as e:  # pragma: no cover - CI installs the test extra, which has them
    pytest.skip(
        f"autogen integration not importable ({e}); install 'haltgate[autogen]'",
        allow_module_level=True,
    )

from haltgate.governance.inprocess import LocalGovernance
from haltgate.sdk import ExhaustionError
from haltgate.sdk.errors import find_haltgate_error
from haltgate.sidecar.pipeline_state import PipelineSettings
from tests.sdk.conftest import (
    SidecarFactory,
    Standins,
    budgets_policy,
    llm_requests,
    refusals,
    write_policy,
)

MAX_TURNS = 10
HANG_GUARD_SECONDS = 60
"""A team that would wait forever fails here: a guard against a hang, not a speed figure."""


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
    client = openai_chat_client(
        "llm", model="gpt-4o-mini", url=sc.explicit, max_retries=2, on_warning=warnings.append
    )
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
    client = openai_chat_client(
        "llm", model="gpt-4o-mini", url=sc.explicit, default_headers={"x-standin-tokens": "4096"}
    )
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
    inner = OpenAIChatCompletionClient(
        model="gpt-4o-mini", base_url=standins.llm + "/v1", api_key="x"
    )
    client = HaltgateChatCompletionClient(inner, local=LocalGovernance(policy))
    assert "BYPASSABLE" in repr(client)
    agent = AssistantAgent("worker", model_client=client)
    with pytest.raises(ExhaustionError) as info:
        await agent_turns(agent)
    assert info.value.code == "calls_exhausted"
    assert llm_requests(standins) == 2  # refused before the third call was made
    assert client.local is not None
    assert client.local.budgets()["calls"]["used"] == 2


async def test_a_team_with_the_intervention_handler_ends_with_the_typed_halt(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(budgets_policy({"calls": {"limit": 2}}))
    client = openai_chat_client("llm", model="gpt-4o-mini", url=sc.explicit)
    runtime = SingleThreadedAgentRuntime(
        intervention_handlers=[HaltgateInterventionHandler(client)]
    )
    runtime.start()
    try:
        team = RoundRobinGroupChat(
            [
                AssistantAgent("writer", model_client=client),
                AssistantAgent("critic", model_client=client),
            ],
            max_turns=MAX_TURNS,
            runtime=runtime,
        )
        with pytest.raises(RuntimeError) as info:
            await asyncio.wait_for(team.run(task="write a poem"), HANG_GUARD_SECONDS)
        halt = find_haltgate_error(info.value)  # AutoGen re-raised it as text: typed again
        assert isinstance(halt, ExhaustionError) and halt.code == "calls_exhausted"
        assert halt is client.halt and halt.decision_id
        # Halted before it starts: the team ends at once again, no request is sent.
        await team.reset()
        with pytest.raises(RuntimeError) as again:
            await asyncio.wait_for(team.run(task="once more"), HANG_GUARD_SECONDS)
        assert find_haltgate_error(again.value) is halt
        assert refusals(sc, "calls_exhausted") == 1 and llm_requests(standins) == 2
    finally:
        await runtime.stop()


async def test_a_client_wrapped_by_hand_reports_warnings_and_does_not_retry(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(budgets_policy({"calls": {"limit": 2}, "warnAt": 0.5}))
    inner = OpenAIChatCompletionClient(
        model="gpt-4o-mini", base_url=sc.explicit + "/llm/v1", api_key="x", max_retries=2
    )
    warnings: list[tuple[str, ...]] = []
    client = HaltgateChatCompletionClient(inner, on_warning=warnings.append)
    assert client.hooked
    await client.create([UserMessage(content="one", source="user")])
    assert warnings == [("calls",)]
    await client.create([UserMessage(content="two", source="user")])
    with pytest.raises(ExhaustionError):
        await client.create([UserMessage(content="three", source="user")])
    assert refusals(sc, "calls_exhausted") == 1  # the OpenAI SDK did not retry the refusal


async def test_dump_and_load_component(sidecar_factory: SidecarFactory, standins: Standins) -> None:
    sc = await sidecar_factory(budgets_policy({"calls": {"limit": 1}}))
    client = openai_chat_client("llm", model="gpt-4o-mini", url=sc.explicit)
    model = client.dump_component()
    assert model.provider == "haltgate.sdk.autogen.HaltgateChatCompletionClient"
    loaded = ChatCompletionClient.load_component(model)
    assert isinstance(loaded, HaltgateChatCompletionClient) and loaded.hooked
    assert loaded.sidecar is not None and loaded.sidecar.url == sc.explicit
    await loaded.create([UserMessage(content="one", source="user")])
    with pytest.raises(ExhaustionError):  # the loaded client raises typed halts too
        await loaded.create([UserMessage(content="two", source="user")])
    assert refusals(sc, "calls_exhausted") == 1
