"""Server-sent events framed as the raw bytes they came in, one event at a time.

A metered stream is relayed event by event: each event is read (usage, token estimate)
and checked against the budget before it is relayed, so a cut lands between two events
and the agent has received exactly what it is charged for. The bytes of each event are
relayed as the upstream sent them; only what the sidecar must hide is taken out
(:mod:`haltgate.sidecar.injected_usage`).
"""

from __future__ import annotations

import re

from haltgate.sidecar.sse import DEFAULT_MAX_EVENT_BYTES, SSEEvent, _parse_block

__all__ = ["EventFramer", "parse_event"]

# A blank line: two line endings in a row, each \r\n, \r or \n. Atomic groups, so one
# \r\n is never read as \r then \n (which would end an event inside a line).
_BOUNDARY = re.compile(rb"(?>\r\n|\r|\n)(?>\r\n|\r|\n)")
_TAIL = 3
"""Bytes kept from before a chunk to find a boundary split across chunks (a blank line is
at most 4 bytes, ``\\r\\n\\r\\n``)."""


class EventFramer:
    """Feed raw stream bytes, receive the complete events they finish, as raw bytes.

    Each event comes with its blank line, so the events joined are the bytes fed. The
    start of an event not complete yet is held; past ``max_event_bytes`` :attr:`overflow`
    is set and the held bytes dropped (the relay ends the stream with a typed error).
    Only each new chunk (plus the few bytes before it) is searched for a boundary and
    held pieces are joined once, when their event completes: linear time. Streams with
    ``\\n`` line endings only (nearly all) are split with ``bytes.find``.
    """

    __slots__ = ("_cr", "_max", "_pieces", "_size", "_tail", "overflow")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._pieces: list[bytes] = []
        self._size = 0
        self._tail = b""
        self._cr = False
        self.overflow = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events ``chunk`` completes (raw bytes, blank line included)."""
        if not chunk:
            return []
        if not self._cr and b"\r" in chunk:
            self._cr = True
        if self._pieces:
            if self._end(self._tail + chunk, 0) < 0:
                self._keep(chunk)
                return []
            buf = b"".join(self._pieces) + chunk
            self._pieces, self._size, self._tail = [], 0, b""
        else:
            buf = chunk
        events: list[bytes] = []
        start = 0
        while (end := self._end(buf, start)) >= 0:
            events.append(buf[start:end])
            start = end
        if start < len(buf):
            self._keep(buf[start:] if start else buf)
        return events

    def _end(self, data: bytes, start: int) -> int:
        """Index just past the first blank line at or after ``start`` (-1: none)."""
        if not self._cr:
            i = data.find(b"\n\n", start)
            return i + 2 if i >= 0 else -1
        m = _BOUNDARY.search(data, start)
        return m.end() if m is not None else -1

    def _keep(self, data: bytes) -> None:
        self._pieces.append(data)
        self._size += len(data)
        self._tail = (self._tail + data)[-_TAIL:] if len(data) < _TAIL else data[-_TAIL:]
        if self._size > self._max:
            self.overflow = True
            self._pieces, self._size, self._tail = [], 0, b""  # never relayed

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished event held (what the size bound limits)."""
        return self._size

    def rest(self) -> bytes:
        """The held bytes (the stream ended without completing their event)."""
        out = b"".join(self._pieces)
        self._pieces, self._size, self._tail = [], 0, b""
        return out


def parse_event(raw: bytes) -> SSEEvent | None:
    """The event in one framed event's bytes (``None``: comments or no data)."""
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return _parse_block(raw)
