"""CPU cost of relaying a metered SSE stream, per event, in process (no sockets).

Run: ``.venv/bin/python bench/stream_relay.py [--events N] [--rounds N]``

An OpenAI-shaped chat stream asked with ``include_usage`` (``"usage":null`` on every chunk,
a final usage chunk) goes through what the relay does to it, delivered one event per
chunk (a paced model) and all in one chunk (a burst):

- ``frame+read``: split into raw events, parse each, read usage, check the budget guard
  (the relay of a stream whose client asked for usage: bytes unchanged);
- ``+hide usage``: the same, plus taking out what an injected ``include_usage`` added
  (the ``"usage":null`` member cut out of the bytes, the usage chunk dropped);
- ``+re-serialise``: for comparison, hiding usage by re-encoding every chunk's JSON
  (what the sidecar avoids);
- ``parse+hold (main)``: what the relay did before per-event metering: the SSE parser and
  usage reader on a copy, the bytes relayed through an ``EventHold`` per chunk.

Figures are microseconds per event on this machine; compare the rows of one run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import orjson

from haltgate.sidecar.injected_usage import HiddenUsage
from haltgate.sidecar.sse import EventHold, SSEParser
from haltgate.sidecar.sse_frames import EventFramer, parse_event
from haltgate.sidecar.usage import Dialect, UsageReader


def stream(n: int) -> list[bytes]:
    chunks = []
    for i in range(n):
        obj = {
            "id": "chatcmpl-abc",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-mini",
            "system_fingerprint": "fp_1",
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": f" tok{i}"},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
            "usage": None,
        }
        chunks.append(b"data: " + orjson.dumps(obj) + b"\n\n")
    final = {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": n + 10},
    }
    chunks.append(b"data: " + orjson.dumps(final) + b"\n\n")
    chunks.append(b"data: [DONE]\n\n")
    return chunks


def frame_read(chunks: list[bytes], hide: bool, reencode: bool = False) -> int:
    framer = EventFramer()
    reader = UsageReader(Dialect.OPENAI_CHAT, "gpt-4o-mini")
    hidden = HiddenUsage()
    out = 0
    for chunk in chunks:
        for raw in framer.feed(chunk):
            event = parse_event(raw)
            obj = reader.read_event(event)
            _ = reader.streamed_output_estimate  # what the budget guard reads
            if reencode and isinstance(obj, dict):
                if "usage" in obj and not obj.get("choices"):
                    continue
                raw = (
                    b"data: "
                    + orjson.dumps({k: v for k, v in obj.items() if k != "usage"})
                    + b"\n\n"
                )
            elif hide:
                raw = hidden.visible(raw, event, obj)
            out += len(raw)
    return out


def parse_hold(chunks: list[bytes]) -> int:
    parser = SSEParser()
    hold = EventHold()
    reader = UsageReader(Dialect.OPENAI_CHAT, "gpt-4o-mini")
    out = 0
    for chunk in chunks:
        for event in parser.feed(chunk):
            reader.read_event(event)
        _ = reader.streamed_output_estimate
        out += len(hold.feed(chunk))
    return out


def timed(rows: dict[str, Callable[[], object]], rounds: int, events: int) -> dict[str, float]:
    """Best time per event of each row, the rows interleaved round by round (the machine
    is shared: a busy moment then slows every row alike)."""
    best = dict.fromkeys(rows, float("inf"))
    for _ in range(rounds):
        for name, fn in rows.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: t / events * 1e6 for name, t in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    paced = stream(args.events)
    burst = [b"".join(paced)]
    n = len(paced)
    print(
        f"metered SSE relay, {args.events} chunks + usage + [DONE]; best of "
        f"{args.rounds}, microseconds per event"
    )
    print(f"   {'':18}{'paced':>9}{'burst':>9}")
    rows: dict[str, Callable[[list[bytes]], object]] = {
        "parse+hold (main)": parse_hold,
        "frame+read": lambda c: frame_read(c, hide=False),
        "+hide usage": lambda c: frame_read(c, hide=True),
        "+re-serialise": lambda c: frame_read(c, hide=False, reencode=True),
    }
    paced_us = timed({k: partial(fn, paced) for k, fn in rows.items()}, args.rounds, n)
    burst_us = timed({k: partial(fn, burst) for k, fn in rows.items()}, args.rounds, n)
    for name in rows:
        print(f"   {name:18}{paced_us[name]:9.2f}{burst_us[name]:9.2f}")


if __name__ == "__main__":
    main()
