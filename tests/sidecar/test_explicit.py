"""Explicit mode end to end: agent -> sidecar (alias base URL) -> stand-in upstreams."""

from __future__ import annotations

import aiohttp
import orjson

from tests.sidecar.conftest import SidecarFactory, Standins

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three"}],
        "max_tokens": 5}


async def test_chat_answer_unchanged_and_headers(sidecar_factory: SidecarFactory,
                                                 standins: Standins) -> None:
    sc = await sidecar_factory()
    raw = orjson.dumps(CHAT)
    async with aiohttp.ClientSession() as s:
        async with s.post(standins.llm + "/v1/chat/completions", data=raw) as r:
            direct = await r.read()
        async with s.post(sc.explicit + "/llm/v1/chat/completions", data=raw) as r:
            via = await r.read()
            assert r.status == 200
            assert r.headers["x-haltgate-decision-id"]
            assert float(r.headers["x-haltgate-overhead-ms"]) >= 0
    assert via == direct
    # The upstream received the agent's bytes unchanged.
    assert standins.received("llm").requests[-1].body == raw
