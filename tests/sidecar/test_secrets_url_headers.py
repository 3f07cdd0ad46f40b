"""The secrets guardrail looks at the URL (path and query) and header values of a request,
not only its body: a key there must not reach the upstream."""

from __future__ import annotations

import aiohttp

from tests.sidecar.conftest import SidecarFactory, Standins
from tests.sidecar.test_audit_redaction import AWS, GITHUB, OPENAI, chat, outcomes

BLOCK = {"spec": {"guardrails": {"secrets": {"action": "block", "direction": "request"}}}}
REDACT = {"spec": {"guardrails": {"secrets": {"action": "redact", "direction": "request"}}}}


async def test_key_in_path_query_or_header_is_blocked(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(BLOCK)
    async with aiohttp.ClientSession() as s:
        for url, headers in (
            (f"/api/echo/files/{AWS}", {}),
            ("/api/echo/x?token=" + GITHUB, {}),
            # percent-encoded inside the key: decoded before the scan
            ("/api/echo/" + AWS[:4] + "%" + format(ord(AWS[4]), "02X") + AWS[5:], {}),
            ("/api/echo/x", {"X-Note": f"remember {OPENAI}"}),
        ):
            async with s.get(sc.explicit + url, headers=headers) as r:
                assert r.status == 403, url
                assert (await r.json())["error"]["code"] == "guardrail_secrets", url
    assert not standins.received("api").requests
    records = await outcomes(sc, 4)
    paths = [{f.get("path") for f in r.findings} for r in records[:4]]
    assert paths == [{"/url/path"}, {"/url/query/0/1"}, {"/url/path"}, {"/header/x-note/0"}]


async def test_credential_headers_and_sdk_headers_pass(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(BLOCK)
    sdk = {
        "Authorization": f"Bearer {OPENAI}",
        "x-api-key": OPENAI,
        "User-Agent": "OpenAI/Python 1.54.3",
        "X-Stainless-Lang": "python",
        "X-Stainless-Package-Version": "1.54.3",
        "X-Stainless-Runtime-Version": "3.11.7",
        "X-Stainless-Arch": "x64",
        "anthropic-version": "2023-06-01",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "X-Request-Id": "9a3c1f0e-6f1b-4c1d-9a3e-2b7d5e8f0a11",
        "Cookie": f"session={GITHUB}",
    }
    async with (
        aiohttp.ClientSession() as s,
        s.post(sc.explicit + "/llm/v1/chat/completions", json=chat("hello"), headers=sdk) as r,
    ):
        assert r.status == 200, await r.text()
    received = standins.received("llm").requests[0]
    assert received.headers["Authorization"] == f"Bearer {OPENAI}"


async def test_redact_action_rewrites_url_and_header(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(REDACT)
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            sc.explicit + f"/api/echo/k/{AWS}",
            params={"q": "cats", "t": GITHUB},
            headers={"X-Note": f"key {OPENAI} end", "X-Other": "plain value"},
        ) as r,
    ):
        assert r.status == 200
        echoed = await r.json()
    assert echoed["path"] == "/echo/k/<AWS_KEY_1>"
    assert echoed["query"] == "q=cats&t=<GITHUB_TOKEN_1>"  # as the upstream decodes it
    received = {k.lower(): v for k, v in standins.received("api").requests[0].headers.items()}
    assert received["x-note"] == "key <OPENAI_KEY_1> end"
    assert received["x-other"] == "plain value"
    (record,) = await outcomes(sc, 1)
    assert AWS not in record.target and GITHUB not in record.target
