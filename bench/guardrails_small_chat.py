"""Guardrail CPU of one small chat call, in process: what the sidecar's guardrails cost on
the call of ``bench/sidecar_overhead.py`` (two short messages in, a short answer out).

Run: ``.venv/bin/python bench/guardrails_small_chat.py [--rounds 25] [--calls 300]``

The policy's guardrails are those of ``sidecar_overhead.py`` (prompt injection on
requests, PII redaction and secrets on both directions), compiled as the sidecar compiles
them. Timed per call, as the sidecar runs them: the request's URL and headers
(``request_meta``), the request body (``Guardrails.scan_json``), the answer body as the
stand-in LLM sends it (``response_body.scan_decoded_body``, model answer channel) and the
answer's header values (``answer_headers``). CPU time of this process
(``time.process_time``), best of ``--rounds`` rounds of ``--calls`` calls: warm caches,
the code's own cost; under load and between other work a call costs more (see
docs/sidecar.md, "Guardrails on a small chat"). To compare trees, run the same file with
``PYTHONPATH`` pointing at the other tree's packages.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sidecar_overhead as overhead

ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-2ba16dbe49770eb93db7e91a",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": " ".join(f"tok{i}" for i in range(16)),
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 21,
            "completion_tokens": 16,
            "total_tokens": 37,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
)
"""The stand-in LLM's answer to ``sidecar_overhead.CHAT`` (its shape and sizes)."""
REQUEST_HEADERS = (
    ("Host", "127.0.0.1:8080"),
    ("Content-Type", "application/json"),
    ("Content-Length", str(len(overhead.CHAT))),
    ("User-Agent", "Python/3.11 aiohttp/3.9"),
    ("Accept", "*/*"),
    ("Accept-Encoding", "gzip, deflate"),
)
ANSWER_HEADERS = (
    ("Content-Type", "application/json; charset=utf-8"),
    ("Content-Length", str(len(ANSWER))),
    ("Date", "Mon, 07 Dec 2026 21:00:00 GMT"),
    ("Server", "Python/3.11 aiohttp/3.9"),
)


def stages() -> dict[str, Callable[[], object]]:
    from haltgate.governance.guardrails import Guardrails
    from haltgate.governance.guardrails.answer_headers import scan_headers
    from haltgate.governance.guardrails.request_meta import scan_request_meta
    from haltgate.governance.guardrails.response_body import scan_decoded_body
    from haltgate.governance.policy_checks import Guardrails as Spec

    g = Guardrails.from_spec(Spec.model_validate(overhead.GUARDRAILS))
    content_type = dict(ANSWER_HEADERS)["Content-Type"]
    return {
        "request URL and headers": lambda: scan_request_meta(
            g, "/llm/v1/chat/completions", "", REQUEST_HEADERS
        ),
        # parsed per call, as the sidecar's classification does
        "request body": lambda: g.scan_json(orjson.loads(overhead.CHAT), "request"),
        "answer body": lambda: scan_decoded_body(g, ANSWER, content_type, channel="request"),
        "answer headers": lambda: scan_headers(g, ANSWER_HEADERS),
    }


def best_us(fn: Callable[[], object], rounds: int, calls: int) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, time.process_time() - t0)
    return best / calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()
    import os

    from haltgate.governance.guardrails import engine

    print(f"guardrails of {engine.__file__}, load average {os.getloadavg()[0]:.1f}")
    total = 0.0
    for name, fn in stages().items():
        us = best_us(fn, args.rounds, args.calls)
        total += us
        print(f"{us:9.1f} us  {name}")
    print(f"{total:9.1f} us  per call (best of {args.rounds} x {args.calls}, CPU time)")


if __name__ == "__main__":
    main()
