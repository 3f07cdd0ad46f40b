"""Every Python snippet of docs/integrations.md runs as printed, against a real sidecar.

Each snippet runs in its own interpreter (imports included, nothing added) with
``HALTGATE_URL`` pointing at a sidecar whose policy has the upstream alias ``openai`` (the
stand-in LLM) and a small ``calls`` budget, ``OPENAI_BASE_URL`` at the stand-in LLM (for the
in-process example) and a ``policy.yaml`` in its working directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.sdk.conftest import SidecarFactory, Standins, base_policy, budgets_policy, merge

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
CALLS = 3
EXPECTED = [
    "halted by haltgate: EXHAUSTION calls_exhausted",  # LangChain
    "out of budget: calls_exhausted",  # AutoGen agent
    "halted by haltgate: EXHAUSTION calls_exhausted",  # AutoGen team
    "haltgate.sdk.autogen.HaltgateChatCompletionClient HaltgateChatCompletionClient",
    "denied: tool_denied",  # a tool's own HTTP client
    "left: {'calls': 3.0}",  # the agent's own view
    "halted in process: calls_exhausted",  # in-process governance
]
"""What each snippet prints (in the page's order): a new snippet needs its line here."""
SNIPPET_TIMEOUT_SECONDS = 240


def test_every_snippet_is_checked() -> None:
    assert len(SNIPPETS) == len(EXPECTED)


def _policy(s: Standins) -> dict[str, object]:
    policy = merge(base_policy(s), budgets_policy({"calls": {"limit": CALLS}}))
    upstreams = policy["spec"]["upstreams"]  # type: ignore[index]
    upstreams.append({"name": "openai", "url": s.llm, "kind": "llm", "provider": "openai"})
    return policy


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
async def test_snippet_runs_as_printed(
    index: int, sidecar_factory: SidecarFactory, standins: Standins, tmp_path: Path
) -> None:
    policy = _policy(standins)
    sc = await sidecar_factory(policy)
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "openai_api_key")
    }
    env.update(
        HALTGATE_URL=sc.explicit,
        OPENAI_BASE_URL=standins.llm + "/v1",
        OPENAI_API_KEY="unused-by-the-stand-in",
    )
    # A subprocess, awaited without blocking: the sidecar serves from this event loop.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SNIPPETS[index],
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), SNIPPET_TIMEOUT_SECONDS)
    text = out.decode()
    assert proc.returncode == 0, f"snippet {index}:\n{SNIPPETS[index]}\n{err.decode()[-3000:]}"
    assert EXPECTED[index] in text, text
