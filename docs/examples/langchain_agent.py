"""A LangChain agent loop behind the haltgate sidecar, stopped by a budget.

Run against the stand-in LLM (see agent-policy.yaml for the three commands). The loop asks
the model, runs a tool, and repeats; haltgate refuses the call past the budget, and the
agent stops on a typed ExhaustionError (no retry). Exit code 0 when halted by haltgate.
Environment: HALTGATE_URL (sidecar, default http://127.0.0.1:17000), HALTGATE_ALIAS
(upstream alias, default openai), MAX_STEPS (default 20).
"""

import asyncio
import os
import sys

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool

from haltgate.sdk import HaltError
from haltgate.sdk.langchain import HaltgateCallbackHandler, chat_openai


@tool
def search(query: str) -> str:
    """Search the notes (a local stand-in tool)."""
    return f"notes about {query}"


async def main() -> int:
    handler = HaltgateCallbackHandler(on_warning=lambda dims: print("budget warning:", dims))
    model = chat_openai(os.environ.get("HALTGATE_ALIAS", "openai"), model="gpt-4o-mini",
                        handler=handler, max_tokens=16)
    messages = [HumanMessage("Research haltgate and summarise it.")]
    try:
        for step in range(int(os.environ.get("MAX_STEPS", "20"))):
            answer = await model.ainvoke(messages)
            print(f"step {step}: {answer.content}")
            messages += [answer, ToolMessage(search.invoke({"query": f"topic {step}"}),
                                             tool_call_id=f"call-{step}")]
    except HaltError as halt:
        print(f"halted by haltgate: {halt.failure_type.value} {halt.code} "
              f"(decision {halt.decision_id})")
        return 0
    print("the budget never halted the agent")
    return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
