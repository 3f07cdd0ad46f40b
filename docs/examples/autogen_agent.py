"""An AutoGen AssistantAgent behind the haltgate sidecar, stopped by a budget.

Run against the stand-in LLM (see agent-policy.yaml for the three commands). The agent
takes one turn after another; haltgate refuses the call past the budget, and the run stops
on a typed ExhaustionError (no retry). Exit code 0 when halted by haltgate.
Environment: HALTGATE_URL (sidecar, default http://127.0.0.1:17000), HALTGATE_ALIAS
(upstream alias, default openai), MAX_STEPS (default 20).
"""

import asyncio
import os
import sys

from autogen_agentchat.agents import AssistantAgent

from haltgate.sdk import HaltError
from haltgate.sdk.autogen import openai_chat_client


async def main() -> int:
    client = openai_chat_client(os.environ.get("HALTGATE_ALIAS", "openai"),
                                model="gpt-4o-mini",
                                on_warning=lambda dims: print("budget warning:", dims))
    agent = AssistantAgent("researcher", model_client=client,
                           system_message="Research haltgate, one step per turn.")
    try:
        for step in range(int(os.environ.get("MAX_STEPS", "20"))):
            result = await agent.run(task=f"step {step}: continue")
            print(f"step {step}: {result.messages[-1].to_text()}")
    except HaltError as halt:
        print(f"halted by haltgate: {halt.failure_type.value} {halt.code} "
              f"(decision {halt.decision_id})")
        return 0
    finally:
        await client.close()
    print("the budget never halted the agent")
    return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
