"""Response guardrails on streamed answers (redaction across events) and detector failures
under failMode open (counted and audited as fail-open events)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from haltgate.governance.guardrails.secrets import SecretsDetector
from tests.sidecar.conftest import SidecarFactory, Standins

CHAT = {
    "model": "gpt-4o-mini",
    "max_tokens": 50,
    "stream": True,
    "stream_options": {"include_usage": True},
    "messages": [{"role": "user", "content": "who do I write to?"}],
}
EMAIL = "john.doe@example.com"


def _events(raw: bytes) -> list[Any]:
    out = []
    for block in raw.split(b"\n\n"):
        data = [line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:")]
        if data:
            joined = b"\n".join(data)
            out.append(joined.decode() if joined == b"[DONE]" else orjson.loads(joined))
    return out


async def _stream(url: str, text: str) -> bytes:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url, data=orjson.dumps(CHAT), headers={"x-standin-text": text}) as r,
    ):
        assert r.status == 200
        return await r.read()


async def _outcome(sc: Any) -> Any:
    for _ in range(200):
        outcomes = [r for r in sc.audit.records if r.phase == "outcome"]
        if outcomes:
            return outcomes[-1]
        await asyncio.sleep(0.01)
    raise AssertionError("no outcome record")


async def _metric(url: str, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        text = await r.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_streamed_answer_is_redacted_across_events(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(
        {
            "spec": {
                "guardrails": {
                    "pii": {"direction": "response", "action": "redact", "entities": ["email"]}
                }
            }
        }
    )
    # The stand-in streams one word per event: the address is one of many words.
    text = "please write to " + EMAIL + " about the plan " + "and more " * 20
    raw = await _stream(sc.explicit + "/llm/v1/chat/completions", text)
    assert EMAIL.encode() not in raw
    events = _events(raw)  # every event still parses
    assert events[-1] == "[DONE]"
    content = "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in events[:-1]
        if isinstance(e, dict) and e.get("choices")
    )
    assert content.startswith("please write to ") and "about the plan" in content
    assert content.count("and more") == 20
    assert any(isinstance(e, dict) and e.get("usage") for e in events)  # usage relayed
    outcome = await _outcome(sc)
    assert outcome.decision == "allow"
    assert any(f["detector"] == "pii" and f["action"] == "redact" for f in outcome.findings)


async def test_detector_failure_in_a_stream_is_a_fail_open_event(
    sidecar_factory: SidecarFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sc = await sidecar_factory(
        {
            "spec": {
                "guardrails": {
                    "failMode": "open",
                    "secrets": {"direction": "response", "action": "block"},
                }
            }
        }
    )

    def broken(self: SecretsDetector, text: str, **kw: Any) -> list[Any]:
        raise ValueError("detector bug")  # stands in for a detector that crashes

    monkeypatch.setattr(SecretsDetector, "detect", broken)
    # a word the secrets detector reads ("token"): on a text without anything it needs,
    # the policy's clean gate does not call it at all (guardrails/clean_gate.py)
    raw = await _stream(sc.explicit + "/llm/v1/chat/completions", "a harmless token answer")
    assert _events(raw)[-1] == "[DONE]"  # open: the answer is delivered
    outcome = await _outcome(sc)
    assert outcome.decision == "allow"
    assert {"detector": "secrets", "action": "fail_open", "error": "ValueError"} in [
        dict(f) for f in outcome.findings
    ]
    assert await _metric(sc.metrics, "haltgate_fail_open_total", control="guardrails") >= 1


async def test_oversized_prompt_scan_error_is_a_fail_open_event(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """A prompt past the detectors' size bound cannot be scanned: under failMode open it
    goes through, and that is counted and audited, not silent."""
    sc = await sidecar_factory(
        {
            "spec": {
                "guardrails": {
                    "failMode": "open",
                    "pii": {"direction": "request", "action": "redact"},
                }
            }
        }
    )
    body = {
        **CHAT,
        "stream": False,
        "messages": [{"role": "user", "content": "x " * (1024 * 1024 + 10)}],
    }
    async with (
        aiohttp.ClientSession() as s,
        s.post(sc.explicit + "/llm/v1/chat/completions", data=orjson.dumps(body)) as r,
    ):
        assert r.status == 200, await r.text()
    outcome = await _outcome(sc)
    assert {"detector": "pii", "action": "fail_open", "error": "TextTooLarge"} in [
        dict(f) for f in outcome.findings
    ]
    assert await _metric(sc.metrics, "haltgate_fail_open_total", control="guardrails") >= 1


async def test_model_stage_scans_stream_events_off_the_event_loop(
    sidecar_factory: SidecarFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guardrails model stage (a forward pass per text) runs on its own thread for
    stream events too, as it does for whole bodies: the event loop keeps serving."""
    import threading

    from haltgate.governance.guardrails import engine

    real = engine._shared_model_scorer()
    scored: list[tuple[str, str]] = []

    def noting_scorer(text: str) -> float:
        scored.append((text, threading.current_thread().name))
        return real(text)

    monkeypatch.setattr(engine, "_shared_model_scorer", lambda: noting_scorer)
    sc = await sidecar_factory(
        {
            "spec": {
                "guardrails": {
                    "promptInjection": {
                        "enabled": True,
                        "model": True,
                        "direction": "response",
                        "action": "block",
                    }
                }
            }
        }
    )
    answer = "The quarterly planning office handles the garden schedule for everyone."
    raw = await _stream(sc.explicit + "/llm/v1/chat/completions", answer)
    text = "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in _events(raw)
        if isinstance(e, dict) and e.get("choices")
    )
    assert text == answer
    streamed = [thread for scanned, thread in scored if "planning" in scanned]
    assert streamed, f"the model stage did not scan the stream: {scored}"
    assert all(t.startswith("haltgate-guard-model") for t in streamed), streamed
    # An event's own fields (object type, model name) are not prose the model reads alone.
    assert not [s for s, _ in scored if "chat.completion.chunk" in s], scored


def _model_policy(direction: str, budget_ms: int, fail_mode: str) -> dict[str, Any]:
    return {
        "spec": {
            "guardrails": {
                "failMode": fail_mode,
                "promptInjection": {
                    "enabled": True,
                    "model": True,
                    "modelBudgetMs": budget_ms,
                    "direction": direction,
                    "action": "block",
                },
            }
        }
    }


LONG_ANSWER = " ".join(
    f"Paragraph {n} explains how the garden team schedules its quarterly planning work."
    for n in range(12)
)


async def test_model_time_budget_cuts_a_stream_when_fail_closed(
    sidecar_factory: SidecarFactory,
) -> None:
    """Once a call's model time (modelBudgetMs) is spent, its next text is not scored:
    failMode closed ends the stream with a typed error instead of holding the model
    thread for the whole answer."""
    roomy = await sidecar_factory(_model_policy("response", 600_000, "closed"))
    raw = await _stream(roomy.explicit + "/llm/v1/chat/completions", LONG_ANSWER)
    assert b"event: error" not in raw  # the same answer within its budget: relayed whole
    sc = await sidecar_factory(_model_policy("response", 1, "closed"))
    raw = await _stream(sc.explicit + "/llm/v1/chat/completions", LONG_ANSWER)
    assert b"event: error" in raw, raw[-300:]
    error = orjson.loads(raw.rsplit(b"data: ", 1)[1])["error"]
    assert (error["type"], error["code"]) == ("SAFETY", "guardrail_error"), error
    outcome = await _outcome(sc)
    assert (outcome.decision, outcome.code) == ("deny", "guardrail_error")


async def test_model_time_budget_passes_fail_open_and_counts_it(
    sidecar_factory: SidecarFactory,
) -> None:
    sc = await sidecar_factory(_model_policy("both", 1, "open"))
    raw = await _stream(sc.explicit + "/llm/v1/chat/completions", LONG_ANSWER)
    text = "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in _events(raw)
        if isinstance(e, dict) and e.get("choices")
    )
    assert text == LONG_ANSWER
    outcome = await _outcome(sc)
    assert {
        "detector": "prompt_injection",
        "action": "fail_open",
        "error": "ModelBudgetExceeded",
    } in [dict(f) for f in outcome.findings], outcome.findings
