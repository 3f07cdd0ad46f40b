"""LangChain (real langchain-core + langchain-openai) against a running sidecar and stand-in LLM."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

try:
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
    from langchain_core.tools import tool

    from haltgate.sdk.langchain import HaltgateCallbackHandler, chat_openai
except ImportError as e:  # pragma: no cover - CI installs the test extra, which has them
    pytest.skip(
        f"langchain integration not importable ({e}); install 'haltgate[langchain]'",
        allow_module_level=True,
    )

from haltgate.governance.inprocess import LocalGovernance
from haltgate.sdk import (
    DeniedError,
    ExhaustionError,
    ExternalHaltError,
    HaltError,
    StagnationError,
)
from haltgate.sdk.client import AsyncSidecarClient
from haltgate.sidecar.pipeline_state import PipelineSettings
from tests.sdk.conftest import (
    ADMIN_TOKEN,
    SidecarFactory,
    Standins,
    budgets_policy,
    llm_requests,
    refusals,
    write_policy,
)

MAX_STEPS = 10


@tool
def lookup(query: str) -> str:
    """Look something up (a local tool; the loop calls it after every model answer)."""
    return f"result for {query}"


async def agent_loop(
    model: Any, steps: int = MAX_STEPS, callbacks: list[Any] | None = None
) -> list[BaseMessage]:
    """A minimal ReAct-style loop: model, tool, model, ... (bounded)."""
    messages: list[BaseMessage] = [HumanMessage("find the answer")]
    for i in range(steps):
        answer = await model.ainvoke(messages)
        assert isinstance(answer, AIMessage)
        messages.append(answer)
        result = await lookup.ainvoke({"query": f"q{i}"}, config={"callbacks": callbacks})
        messages.append(ToolMessage(result, tool_call_id=f"call-{i}"))
    return messages


async def test_agent_loop_stops_on_exhaustion_without_retry(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(budgets_policy({"calls": {"limit": 3}}))
    handler = HaltgateCallbackHandler()
    model = chat_openai(
        "llm", model="gpt-4o-mini", url=sc.explicit, handler=handler, max_tokens=4, max_retries=2
    )
    with pytest.raises(ExhaustionError) as info:
        await agent_loop(model)
    err = info.value
    assert (err.type, err.code) == ("EXHAUSTION", "calls_exhausted")
    assert err.decision_id and err.status == 429 and err.terminal
    # The agent's own view tells the same story (the halt's error body carries no budget).
    view = AsyncSidecarClient(sc.explicit)
    assert await view.halted()
    calls = (await view.budgets())["calls"]
    assert (calls.used, calls.limit, calls.remaining) == (3, 3, 0)
    assert llm_requests(standins) == 3  # the refused call never reached the LLM
    # The OpenAI SDK (max_retries=2) did not retry the refusal: one attempt reached the sidecar.
    assert refusals(sc, "calls_exhausted") == 1
    assert handler.halt is err
    # Once halted, later calls fail at once with the same halt, without a model request
    # (in a thread: the handler asks the sidecar, which runs in this loop, if it still holds).
    with pytest.raises(ExhaustionError) as again:
        await asyncio.to_thread(model.invoke, "again")
    assert again.value is err
    assert refusals(sc, "calls_exhausted") == 1


async def test_plain_openai_client_does_not_retry_a_halt(
    sidecar_factory: SidecarFactory,
) -> None:
    """Without the hook too, the SDK does not retry the 429 of a halt: the sidecar answers
    ``x-should-retry: false``, which the OpenAI SDK obeys."""
    from langchain_openai import ChatOpenAI

    sc = await sidecar_factory(budgets_policy({"calls": {"limit": 1}}))
    model = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=sc.explicit + "/llm/v1",
        api_key="x",
        max_tokens=4,
        max_retries=1,
    )
    await model.ainvoke("one")
    with pytest.raises(Exception, match="calls budget exhausted"):
        await model.ainvoke("two")
    assert refusals(sc, "calls_exhausted") == 1


async def test_sync_invoke_and_warnings(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory(budgets_policy({"calls": {"limit": 4}, "warnAt": 0.5}))
    seen: list[tuple[str, ...]] = []
    handler = HaltgateCallbackHandler(on_warning=seen.append)
    model = chat_openai("llm", model="gpt-4o-mini", url=sc.explicit, handler=handler, max_tokens=3)
    # The sidecar runs in this loop: the sync client must run in a thread.
    answer = await asyncio.to_thread(model.invoke, "hello there")
    assert answer.content == "tok0 tok1 tok2"
    assert handler.warnings == ()
    await asyncio.to_thread(model.invoke, "hello again")
    assert handler.warnings == ("calls",)
    assert seen == [("calls",)]


async def test_streaming_halt_surfaces_as_exhaustion(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    # No output cap: the sidecar reserves 2 tokens, the stand-in streams 4096; the budget
    # covers the reservation but not the stream, so the sidecar cuts it with an error event.
    # A price without max_output_tokens: the call reserves the sidecar's default (2), not
    # the model's real maximum, so the stream can outgrow its reservation.
    policy = budgets_policy({"tokens": {"limit": 2000}})
    policy["spec"]["pricing"] = {"models": {"gpt-4o-mini": {"input": 0.15, "output": 0.6}}}
    sc = await sidecar_factory(policy, pipeline=PipelineSettings(default_max_output_tokens=2))
    model = chat_openai(
        "llm", model="gpt-4o-mini", url=sc.explicit, default_headers={"x-standin-tokens": "4096"}
    )
    chunks: list[str] = []
    with pytest.raises(ExhaustionError) as info:
        async for chunk in model.astream("write a lot"):
            chunks.append(str(chunk.content))
            assert len(chunks) < 5000
    assert info.value.code == "tokens_exhausted"
    assert info.value.decision_id
    assert chunks and "tok0" in "".join(chunks)  # the relayed part arrived before the cut
    assert llm_requests(standins) == 1


async def test_tool_denial_is_typed_and_not_terminal(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """A tool that calls an MCP server through the sidecar gets a typed DeniedError."""
    import aiohttp

    from haltgate.sdk.client import base_url, raise_for_response

    sc = await sidecar_factory()
    handler = HaltgateCallbackHandler()

    @tool
    async def delete_file(path: str) -> str:
        """Delete a file through the MCP server."""
        msg = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "delete_file", "arguments": {"path": path}},
        }
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                base_url("mcp", url=sc.explicit),
                json=msg,
                headers={"Accept": "application/json, text/event-stream"},
            ) as r,
        ):
            raise_for_response(r.status, r.headers, await r.read())
        return "deleted"

    with pytest.raises(DeniedError) as info:
        await delete_file.ainvoke({"path": "/etc/passwd"}, config={"callbacks": [handler]})
    assert info.value.code == "tool_denied" and not info.value.terminal
    assert handler.halt is None  # a denial does not halt the run
    assert not standins.received("mcp").requests


async def test_local_fallback_stops_loop_before_the_call(
    tmp_path: Path, standins: Standins
) -> None:
    """No sidecar: the same policy file and engine, in process (bypassable)."""
    from langchain_openai import ChatOpenAI

    local = LocalGovernance(write_policy(tmp_path, standins, {"calls": {"limit": 5}}))
    assert "BYPASSABLE" in repr(local)
    handler = HaltgateCallbackHandler(local=local)
    model = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=standins.llm + "/v1",
        api_key="x",
        max_tokens=4,
        callbacks=[handler],
    )
    with pytest.raises(ExhaustionError) as info:
        # model, tool, model, tool, model: 5 calls; the third tool call is refused.
        await agent_loop(model, callbacks=[handler])
    assert info.value.code == "calls_exhausted"
    assert llm_requests(standins) == 3
    budget = local.budgets()["calls"]
    assert budget["used"] == 5 and budget["limit"] == 5


async def test_local_fallback_detects_identical_retries(tmp_path: Path, standins: Standins) -> None:
    from langchain_openai import ChatOpenAI

    local = LocalGovernance(write_policy(tmp_path, standins, {"identicalRetries": {"limit": 2}}))
    handler = HaltgateCallbackHandler(local=local)
    model = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=standins.llm + "/v1",
        api_key="x",
        max_tokens=4,
        callbacks=[handler],
    )
    with pytest.raises(StagnationError) as info:
        for _ in range(MAX_STEPS):
            await model.ainvoke("the same question")
    assert isinstance(info.value, HaltError)
    assert llm_requests(standins) == 2  # the third identical call was never made
    assert local.last_signals is not None and local.last_signals.repeat_rate > 0


async def _admin(sc: Any, action: str) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{sc.admin}/{action}",
            json={"actor": "test"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as r,
    ):
        assert r.status == 200, await r.text()


async def test_a_reset_clears_the_remembered_halt_on_the_next_call(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(budgets_policy({"calls": {"limit": 1}}))
    handler = HaltgateCallbackHandler()
    model = chat_openai("llm", model="gpt-4o-mini", url=sc.explicit, handler=handler, max_tokens=2)
    await asyncio.to_thread(model.invoke, "one")
    with pytest.raises(ExhaustionError):
        await asyncio.to_thread(model.invoke, "two")
    with pytest.raises(ExhaustionError):  # remembered: no request
        await asyncio.to_thread(model.invoke, "three")
    assert (llm_requests(standins), refusals(sc, "calls_exhausted")) == (1, 1)
    await _admin(sc, "reset")  # an operator resets the run: a new one starts
    answer = await asyncio.to_thread(model.invoke, "four")  # the same handler, no restart
    assert answer.content == "tok0 tok1"
    assert handler.halt is None and llm_requests(standins) == 2


async def test_a_lifted_external_halt_clears_on_the_next_call(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(budgets_policy({"calls": {"limit": 10}}))
    handler = HaltgateCallbackHandler()
    model = chat_openai("llm", model="gpt-4o-mini", url=sc.explicit, handler=handler, max_tokens=2)
    await _admin(sc, "halt")
    with pytest.raises(ExternalHaltError):
        await asyncio.to_thread(model.invoke, "one")
    with pytest.raises(ExternalHaltError):  # still halted: raised again, no request
        await asyncio.to_thread(model.invoke, "two")
    assert refusals(sc, "external_halt") == 1
    await _admin(sc, "reset")
    await asyncio.to_thread(model.invoke, "three")
    assert handler.halt is None and llm_requests(standins) == 1


async def test_a_periodic_refusal_is_remembered_until_its_retry_after(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(budgets_policy({"calls": {"limit": 1, "period": "day"}}))
    handler = HaltgateCallbackHandler()
    now = [1000.0]
    handler.clock = lambda: now[0]  # the handler's clock, not the sidecar's
    model = chat_openai("llm", model="gpt-4o-mini", url=sc.explicit, handler=handler, max_tokens=2)
    await asyncio.to_thread(model.invoke, "one")
    with pytest.raises(ExhaustionError) as info:
        await asyncio.to_thread(model.invoke, "two")
    retry_after = info.value.retry_after
    assert retry_after is not None and 0 < retry_after <= 86_400
    now[0] += retry_after - 1
    with pytest.raises(ExhaustionError):  # before retry_after: no request
        await asyncio.to_thread(model.invoke, "three")
    assert refusals(sc, "calls_exhausted") == 1
    now[0] += 1
    with pytest.raises(ExhaustionError):  # at retry_after the call goes out again
        await asyncio.to_thread(model.invoke, "four")
    assert refusals(sc, "calls_exhausted") == 2  # (the sidecar's day has not passed)


async def test_each_retry_of_an_upstream_5xx_is_a_call_of_the_budget(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """What docs/integrations.md says: the OpenAI SDK retries an upstream's own 5xx (not a
    halt), and every attempt went through the sidecar, so every attempt counts."""
    sc = await sidecar_factory(budgets_policy({"calls": {"limit": 10}}))
    model = chat_openai(
        "llm",
        model="gpt-4o-mini",
        url=sc.explicit,
        max_tokens=2,
        max_retries=2,
        default_headers={"x-standin-behavior": "error"},
    )
    with pytest.raises(Exception) as info:
        await asyncio.to_thread(model.invoke, "fail please")
    assert not isinstance(info.value, HaltError)
    assert llm_requests(standins) == 3  # the first attempt and two retries
    assert (await AsyncSidecarClient(sc.explicit).budgets())["calls"].used == 3
