"""The sidecar tells the guardrails where a text comes from: a tool's answer and a tool
result inside an LLM request are judged as documents (the n-gram fast stage's document
threshold), the agent's own prompt as request text; the audit record names the channel."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from tests.guardrails.test_channels import PROBE
from tests.sidecar.conftest import SidecarFactory
from tests.sidecar.test_audit_redaction import outcomes
from tests.sidecar.test_response_scanning import fetch

POLICY = {"spec": {"guardrails": {"promptInjection": {"fastModel": True}}}}


async def test_tool_answer_is_judged_as_a_document(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory(POLICY)
    status, text, _ = await fetch(sc.explicit, PROBE, "text/plain")
    assert status == 403, text
    assert orjson.loads(text)["error"]["code"] == "guardrail_prompt_injection"
    (record,) = await outcomes(sc, 1)
    found = [dict(f) for f in record.findings if f.get("detector") == "prompt_injection"]
    assert found and {f["channel"] for f in found} == {"document"}, record.findings


def _chat(last: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": "m",
        "max_tokens": 2,
        "messages": [{"role": "user", "content": "What does the ticket say?"}, last],
    }


async def test_tool_result_in_a_request_is_a_document_the_prompt_is_not(
    sidecar_factory: SidecarFactory,
) -> None:
    sc = await sidecar_factory(POLICY)
    url = sc.explicit + "/llm/v1/chat/completions"
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=_chat({"role": "user", "content": PROBE})) as r:
            assert r.status == 200, await r.text()
        tool = {"role": "tool", "tool_call_id": "call_1", "content": PROBE}
        async with s.post(url, json=_chat(tool)) as r:
            assert r.status == 403, await r.text()
            assert (await r.json())["error"]["code"] == "guardrail_prompt_injection"
    records = await outcomes(sc, 2)
    found = [dict(f) for r in records for f in r.findings]
    assert found and all(f["channel"] == "document" for f in found), found
    assert all(f["path"].startswith("/messages/1/") for f in found)
