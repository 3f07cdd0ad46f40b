"""Raw event framing (sse_frames) and hiding injected usage (injected_usage)."""

from __future__ import annotations

import random

import orjson
import pytest

from haltgate.sidecar.injected_usage import HiddenUsage
from haltgate.sidecar.sse import SSEParser
from haltgate.sidecar.sse_frames import EventFramer, parse_event

STREAMS = [
    b'data: {"a":1}\n\ndata: {"b":2}\n\nevent: x\ndata: y\n\n: comment\n\ndata: [DONE]\n\n',
    b"data: one\r\n\r\ndata: two\r\ndata: more\r\n\r\nid: 3\rdata: three\r\rdata: z\n\r\n",
    b"data: a\n\ndata: b\r\n\r\n",
]


@pytest.mark.parametrize("stream", STREAMS)
def test_events_joined_are_the_bytes_fed_whatever_the_chunking(stream: bytes) -> None:
    expected = [e for e in SSEParser().feed(stream)]
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(0, 8)))
        pieces = [stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        framer = EventFramer()
        raws = [raw for piece in pieces for raw in framer.feed(piece)]
        assert b"".join(raws) + framer.rest() == stream
        parsed = [e for e in (parse_event(raw) for raw in raws) if e is not None]
        if b"\r" not in stream or all(not p.endswith(b"\r") for p in pieces[:-1]):
            assert parsed == expected


def test_an_event_that_never_ends_overflows() -> None:
    framer = EventFramer(max_event_bytes=100)
    assert framer.feed(b"data: " + b"x" * 60) == []
    assert not framer.overflow
    framer.feed(b"x" * 60)
    assert framer.overflow and framer.buffered == 0


def _hide(raw: bytes) -> bytes:
    event = parse_event(raw)
    assert event is not None
    return HiddenUsage().visible(raw, event, orjson.loads(event.data))


def test_usage_chunk_is_hidden_and_null_usage_cut_out() -> None:
    final = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":1}}\n\n'
    assert _hide(final) == b""
    chunk = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"a"}}],"usage":null}\n\n'
    assert _hide(chunk) == (b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n')
    spaced = b'data: {"id": "c", "choices": [], "usage": null}\r\n\r\n'
    assert _hide(spaced) == b'data: {"id": "c", "choices": []}\r\n\r\n'
    # Not on one line, or usage in a content chunk: re-encoded without usage.
    split = b'data: {"choices":[{"index":0},\ndata: {"usage":null}], "usage":null}\n\n'
    assert orjson.loads(_hide(split)[6:]) == {"choices": [{"index": 0}, {"usage": None}]}
    mixed = b'event: x\ndata: {"choices":[{"index":0}],"usage":{"total_tokens":3}}\n\n'
    assert _hide(mixed) == b'event: x\ndata: {"choices":[{"index":0}]}\n\n'
    # A chunk whose only usage is nested, and a non-JSON event, pass unchanged.
    nested = b'data: {"choices":[{"index":0,"usage":null}]}\n\n'
    assert _hide(nested) == nested
