"""Cost of reading a request one way (issue 15): strict JSON and canonical paths.

    .venv/bin/python bench/strict_json.py [--quick]

Prints, per body, measured in the same run (best of 5 repeats, microseconds per call):
- ``orjson``: ``orjson.loads`` alone, the parse the sidecar did before (the baseline);
- ``strict``: ``strict_json.loads`` (orjson + key scan, exact pass only when needed);
- ``hook``: the naive alternative, ``json.loads`` with an ``object_pairs_hook`` every time;
and for paths: ``canonical_path`` on a plain path (fast path) and on one with escapes; for
queries: ``canonical_query`` (with a name a rule reads) beside ``parse_qsl`` alone.
``+refs``: ``llm_body.context_reference`` (the stored-context walk) on LLM bodies.
Target: ``strict`` adds at most a few microseconds on small bodies and stays well under
the naive ``hook`` on large ones. Results: docs/sidecar.md, "Cost of one reading".
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from haltgate.governance import llm_body, strict_json
from haltgate.governance.canonical import canonical_path
from haltgate.governance.canonical_query import canonical_query


def _chat(messages: int, words: int) -> bytes:
    text = " ".join(["lorem ipsum dolor sit amet"] * (words // 5))
    return orjson.dumps(
        {
            "model": "gpt-4o-mini",
            "max_tokens": 256,
            "stream": True,
            "messages": [
                {"role": "user" if i % 2 else "assistant", "content": text} for i in range(messages)
            ],
        }
    )


def _bodies() -> dict[str, bytes]:
    return {
        "chat 1 msg": _chat(1, 20),
        "chat 20 msgs (~4 KB)": _chat(20, 30),
        "chat 200 msgs (~120 KB)": _chat(200, 100),
        "mcp tools/call": orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tools/call",
                "params": {
                    "name": "create_issue",
                    "arguments": {
                        "repo": "acme/app",
                        "title": "x" * 80,
                        "labels": ["bug", "p1"],
                        "body": {"text": "y" * 400, "links": [{"url": "https://e.x", "rel": "a"}]},
                    },
                },
            }
        ),
        "mcp args with Upper-Case keys": orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": 8,
                "method": "tools/call",
                "params": {
                    "name": "http_get",
                    "arguments": {
                        "url": "https://e.x",
                        "headers": {"Content-Type": "a", "Accept": "b"},
                    },
                },
            }
        ),
        "responses + inline image (~400 KB)": orjson.dumps(
            {
                "model": "gpt-4o",
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "what is this?"},
                            {
                                "type": "input_image",
                                "image_url": "data:image/png;base64," + "QUJD" * 100_000,
                            },
                        ],
                    }
                ],
            }
        ),
    }


def _hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len(pairs) > 1 and len({k.casefold() for k, _ in pairs}) != len(pairs):
        raise ValueError("ambiguous")
    return dict(pairs)


def _best_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    args = parser.parse_args()
    scale = 0.05 if args.quick else 1.0

    print(
        f"{'body':36} {'bytes':>8} {'orjson':>9} {'strict':>9} {'+us':>8} {'hook':>9} {'+refs':>8}"
    )
    for name, body in _bodies().items():
        number = max(5, int(scale * 200_000 / max(len(body) // 200, 1)))
        base = _best_us(lambda b=body: orjson.loads(b), number)
        # As the sidecar reads them: LLM bodies check case at the top level only.
        nested = b'"model"' not in body
        strict = _best_us(lambda b=body, n=nested: strict_json.loads(b, nested=n), number)
        hook = _best_us(lambda b=body: json.loads(b, object_pairs_hook=_hook), number)
        obj = orjson.loads(body)
        refs = (
            _best_us(lambda o=obj: llm_body.context_reference(o), number)
            if isinstance(obj, dict) and "model" in obj
            else 0.0
        )
        print(
            f"{name:36} {len(body):>8} {base:>8.2f}u {strict:>8.2f}u {strict - base:>7.2f}u"
            f" {hook:>8.2f}u {refs:>7.2f}u"
        )

    number = max(1000, int(scale * 300_000))
    plain = _best_us(lambda: canonical_path("/v1/chat/completions"), number)
    escaped = _best_us(lambda: canonical_path("/api/%7Euser/a%20b/%61dmin/x"), number)
    print(f"\ncanonical_path: plain {plain:.3f} us, with escapes {escaped:.3f} us")

    read = frozenset({"action"})
    for query in (
        "api-version=2024-02-01",
        "action=list&page=2",
        "q=garden+tools&page=2&sort=price%3Aasc&tag=a&tag=b",
    ):
        base = _best_us(lambda q=query: parse_qsl(q, keep_blank_values=True), number)
        canon = _best_us(lambda q=query: canonical_query(q, read), number)
        print(f"canonical_query {query[:32]!r:36} {canon:.3f} us (parse_qsl {base:.3f} us)")


if __name__ == "__main__":
    main()
