"""What scanning an answer's header values costs per answer (docs/guardrails.md).

    .venv/bin/python bench/answer_headers.py [--n 2000]

The work the relays add when response guardrails are on: the relayed headers listed
(``relayed_items``) and their values scanned (``scan_headers``, secrets + PII + prompt
injection, pattern stage). Three header sets: a page's typical headers seen before (the
clean-value cache answers), the same with a fresh request id, cookie and rate-limit counts
in every answer (as an API answers), and the first answer of a policy (cache cold).
Best of 5 runs (the first answer: median of 20), microseconds per answer.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from multidict import CIMultiDict, CIMultiDictProxy

from haltgate.governance import policy_checks
from haltgate.governance.guardrails.answer_headers import scan_headers
from haltgate.governance.guardrails.engine import Guardrails
from haltgate.sidecar.relay_headers import relayed_items

TYPICAL = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Date", "Mon, 07 Dec 2026 19:40:00 GMT"),
    ("Server", "nginx/1.25.3"),
    ("Cache-Control", "private, max-age=0"),
    ("ETag", 'W/"5e1-abc123"'),
    ("Vary", "Accept-Encoding"),
    ("X-Request-Id", "9a3c1f0e-6f1b-4c1d-9a3e-2b7d5e8f0a11"),
    ("Set-Cookie", "csrftoken=Xk29fLq8Zr0PwT4mYb7NcV1dHs6GjE3aU5oKi2lQ9wRtS8yB; Path=/; Secure"),
    ("Link", "</style.css>; rel=preload; as=style"),
    ("Content-Disposition", 'attachment; filename="report-2026.pdf"'),
    ("Strict-Transport-Security", "max-age=63072000"),
    ("x-ratelimit-remaining-requests", "4999"),
    ("x-ratelimit-reset-tokens", "6m0s"),
    ("openai-processing-ms", "312"),
    ("Content-Length", "5123"),
]


def guardrails() -> Guardrails:
    return Guardrails.from_spec(
        policy_checks.Guardrails.model_validate(
            {
                "secrets": {"action": "redact", "direction": "response"},
                "pii": {"action": "redact", "direction": "response"},
                "promptInjection": {"enabled": True, "action": "block", "direction": "response"},
            }
        )
    )


def fresh(i: int) -> CIMultiDictProxy[str]:
    out = []
    for k, v in TYPICAL:
        if k == "X-Request-Id":
            v = str(uuid.uuid4())
        elif k == "Set-Cookie":
            v = f"__cf_bm={uuid.uuid4().hex}{i}; Path=/; HttpOnly"
        elif k.startswith("x-ratelimit-remaining"):
            v = str(4999 - i % 4999)
        out.append((k, v))
    return CIMultiDictProxy(CIMultiDict(out))


def best(n: int, sets: list[CIMultiDictProxy[str]]) -> float:
    runs = []
    for _ in range(5):
        g = guardrails()
        t = time.perf_counter()
        for i in range(n):
            scan_headers(g, relayed_items(sets[i]))
        runs.append((time.perf_counter() - t) / n * 1e6)
    return min(runs)


def first(k: int) -> float:
    """One answer per freshly compiled policy (nothing cached yet)."""
    took = []
    for _ in range(k):
        g, headers = guardrails(), CIMultiDictProxy(CIMultiDict(TYPICAL))
        t = time.perf_counter()
        scan_headers(g, relayed_items(headers))
        took.append((time.perf_counter() - t) * 1e6)
    return sorted(took)[len(took) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    n = ap.parse_args().n
    static = [CIMultiDictProxy(CIMultiDict(TYPICAL))] * n
    changing = [fresh(i) for i in range(n)]
    print(f"typical headers, seen before: {best(n, static):.1f} us per answer")
    print(f"fresh ids, cookie, counts:    {best(n, changing):.1f} us per answer")
    print(f"first answer of a policy:     {first(20):.1f} us (median of 20)")


if __name__ == "__main__":
    main()
