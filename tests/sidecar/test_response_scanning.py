"""Response guardrails read what agents read: compressed answers, plain text, HTML, SSE;
what they cannot read follows failMode, counted and audited."""

from __future__ import annotations

import gzip
from typing import Any

import aiohttp
import orjson
import pytest

from haltgate.sidecar.pipeline_state import PipelineSettings
from tests.sidecar.conftest import SidecarFactory, Standins
from tests.sidecar.test_audit_redaction import AWS, EMAIL, outcomes
from tests.sidecar.test_stream_guardrails import _metric

GUARD = {
    "pii": {"action": "redact", "direction": "response", "entities": ["email"]},
    "secrets": {"action": "block", "direction": "response"},
}


def policy(fail_mode: str = "closed") -> dict[str, Any]:
    return {"spec": {"guardrails": {**GUARD, "failMode": fail_mode}}}


async def fetch(
    base: str, body: bytes | str, ctype: str, encoding: str = ""
) -> tuple[int, str, dict[str, str]]:
    """POST /content through the sidecar; the answer as the agent's client decodes it."""
    data = body.encode() if isinstance(body, str) else body
    async with (
        aiohttp.ClientSession() as s,
        s.post(base + "/api/content", params={"type": ctype, "encoding": encoding}, data=data) as r,
    ):
        return r.status, await r.text(errors="replace"), dict(r.headers)


PAGE = (
    f'<html><head><title>Contact</title></head><body><p class="x">Write to {EMAIL} '
    f'&amp; wait.</p><a href="mailto:{EMAIL}">mail us</a><!-- owner {EMAIL} --></body>'
    "</html>"
)


@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate", "raw-deflate", "br"])
@pytest.mark.parametrize(
    "ctype", ["text/plain; charset=utf-8", "text/html", "application/json", "text/markdown"]
)
async def test_text_answers_are_redacted_in_every_encoding(
    sidecar_factory: SidecarFactory, encoding: str, ctype: str
) -> None:
    sc = await sidecar_factory(policy())
    body = (
        orjson.dumps({"note": f"write to {EMAIL} please"}).decode()
        if ctype == "application/json"
        else PAGE
        if ctype == "text/html"
        else f"Dear agent, write to {EMAIL} please."
    )
    status, text, headers = await fetch(sc.explicit, body, ctype, encoding)
    assert status == 200, text
    assert EMAIL not in text
    assert ("&lt;EMAIL_1&gt;" if ctype == "text/html" else "<EMAIL_1>") in text
    assert "Content-Encoding" not in headers  # sent decoded once redacted
    if ctype == "text/html":
        # Markup untouched: only the text, the attribute value and the comment changed.
        assert text.startswith("<html><head><title>Contact</title></head><body><p class")
        assert 'href="mailto:&lt;EMAIL_1&gt;"' in text and "<!-- owner <EMAIL_1> -->" in text
        assert "&amp; wait." in text


@pytest.mark.parametrize("encoding", ["identity", "gzip", "br"])
async def test_secret_in_a_compressed_page_is_blocked(
    sidecar_factory: SidecarFactory, encoding: str
) -> None:
    sc = await sidecar_factory(policy())
    status, text, _ = await fetch(sc.explicit, f"<p>key: {AWS}</p>", "text/html", encoding)
    assert status == 403 and AWS not in text
    assert orjson.loads(text)["error"]["code"] == "guardrail_secrets"


async def test_clean_compressed_answer_is_relayed_as_sent(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory(policy())
    async with (
        aiohttp.ClientSession(auto_decompress=False) as s,
        s.post(
            sc.explicit + "/api/content",
            params={"type": "text/plain", "encoding": "gzip"},
            data=b"nothing to see here " * 50,
        ) as r,
    ):
        assert r.status == 200 and r.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await r.read()) == b"nothing to see here " * 50


UNSCANNABLE = [
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "image/png", "", "type"),
    (b"plain text", "application/octet-stream", "", "type"),
    (b"some text", "text/plain", "zstd", "encoding"),
    (b"not gzip at all", "text/plain", "x-gzip", "corrupt"),
    (b"text", "text/plain; charset=klingon", "", "charset"),
]


@pytest.mark.parametrize(
    ("body", "ctype", "encoding", "reason"),
    UNSCANNABLE,
    ids=[u[3] + "-" + u[1].split(";")[0] for u in UNSCANNABLE],
)
async def test_unscannable_answer_fails_closed(
    sidecar_factory: SidecarFactory, body: bytes, ctype: str, encoding: str, reason: str
) -> None:
    sc = await sidecar_factory(policy("closed"))
    status, text, _ = await fetch(sc.explicit, body, ctype, encoding)
    assert status == 503
    assert orjson.loads(text)["error"]["code"] == "guardrails_unscannable"
    (record,) = await outcomes(sc, 1)
    assert (record.decision, record.code) == ("error", "guardrails_unscannable")
    assert (
        await _metric(
            sc.metrics, "haltgate_guardrail_unscanned_total", reason=reason, outcome="refused"
        )
        == 1
    )


async def test_unscannable_answer_fails_open_counted_and_audited(
    sidecar_factory: SidecarFactory,
) -> None:
    sc = await sidecar_factory(policy("open"))
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    status, _, _ = await fetch(sc.explicit, png, "image/png")
    assert status == 200
    (record,) = await outcomes(sc, 1)
    assert record.decision == "allow"
    assert {"detector": "response_body", "action": "fail_open", "error": "type"} in record.findings
    assert await _metric(sc.metrics, "haltgate_fail_open_total", control="guardrails") == 1
    assert (
        await _metric(
            sc.metrics, "haltgate_guardrail_unscanned_total", reason="type", outcome="passed"
        )
        == 1
    )


async def test_compression_bomb_is_not_inflated(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory(
        policy(), pipeline=PipelineSettings(max_decoded_response_bytes=1024 * 1024)
    )
    bomb = b"\0" * (4 * 1024 * 1024)
    status, text, _ = await fetch(sc.explicit, bomb, "text/plain", "gzip")
    assert status == 503 and orjson.loads(text)["error"]["code"] == "guardrails_unscannable"
    assert (
        await _metric(
            sc.metrics, "haltgate_guardrail_unscanned_total", reason="size", outcome="refused"
        )
        == 1
    )


async def test_sse_answers(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory(policy())
    events = f'data: {{"text": "write to {EMAIL}"}}\n\ndata: plain words and {EMAIL} too\n\n'
    status, text, _ = await fetch(sc.explicit, events, "text/event-stream")
    assert status == 200 and EMAIL not in text
    assert text.count("<EMAIL_1>") == 2
    status, text, _ = await fetch(sc.explicit, f"data: key {AWS} here\n\n", "text/event-stream")
    assert AWS not in text and "guardrail_secrets" in text  # cut with an error event
    # Compressed event streams are decoded as they come and relayed decoded.
    for coding in ("gzip", "deflate", "br"):
        status, text, headers = await fetch(sc.explicit, events, "text/event-stream", coding)
        assert status == 200 and EMAIL not in text and text.count("<EMAIL_1>") == 2, coding
        assert "Content-Encoding" not in headers
    # A coding it cannot decode follows failMode (closed: refused before anything is sent).
    status, text, _ = await fetch(sc.explicit, events, "text/event-stream", "zstd")
    assert status == 503 and EMAIL not in text
    assert orjson.loads(text)["error"]["code"] == "guardrails_unscannable"


async def test_role_list_answer_is_not_a_guardrails_error(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(policy())
    status, text, _ = await fetch(sc.explicit, b'{"role": []}', "application/json")
    assert (status, text) == (200, '{"role": []}')
