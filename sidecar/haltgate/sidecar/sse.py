"""Incremental parser of server-sent events (``text/event-stream``), for relayed streams.

The sidecar relays stream bytes to the agent unchanged as they arrive and feeds a copy
to this parser to read usage. The parser never blocks the relay: an event larger than
``max_event_bytes`` is skipped (counted in ``oversized``) instead of buffered without bound.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EventHold", "SSEEvent", "SSEParser", "event_boundary"]

DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    """The ``event:`` field, ``message`` when absent (as the SSE spec says)."""
    data: str
    """The ``data:`` lines joined with newlines."""


class SSEParser:
    """Feed raw stream bytes, receive the complete events they finish."""

    __slots__ = ("_at_start", "_buf", "_last_cr", "_max", "_skipping", "oversized", "saw_any")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._buf = b""
        self._max = max_event_bytes
        self._skipping = False
        self._last_cr = False
        self._at_start = True
        self.oversized = 0
        """Events dropped for exceeding the size bound."""
        self.saw_any = False
        """At least one complete event was parsed."""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse what ``chunk`` completes. Line endings ``\\n``, ``\\r\\n`` and ``\\r``."""
        if self._last_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the \n of a \r\n split across two chunks
        self._last_cr = chunk.endswith(b"\r")
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf + chunk if self._buf else chunk
        if self._at_start:
            # A stream may start with a BOM, which clients drop (the SSE spec's decoding).
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                self._buf = buf
                return []
            buf = buf.removeprefix(_BOM)
            self._at_start = False
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            else:
                event = _parse_block(buf[start:end])
                if event is not None:
                    events.append(event)
            start = end + 2
        rest = buf[start:]
        if len(rest) > self._max:
            # Keep only the tail (it may hold the start of the separator); forget the event.
            if not self._skipping:
                self.oversized += 1
            self._skipping = True
            rest = rest[-1:]
        self._buf = rest
        if events:
            self.saw_any = True
        return events

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished event held (what the size bound limits)."""
        return len(self._buf)

    @property
    def pending(self) -> bool:
        """Bytes of an unfinished event are buffered (a stream cut here was truncated)."""
        return bool(self._buf.strip())


def _parse_block(block: bytes) -> SSEEvent | None:
    event = "message"
    data: list[str] = []
    for raw in block.split(b"\n"):
        if not raw or raw.startswith(b":"):
            continue
        line = raw.decode("utf-8", "replace")
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if not data:
        return None
    return SSEEvent(event, "\n".join(data))


class EventHold:
    """What a relay holds back of a stream: the start of an event not complete yet.

    Relayed bytes end at event boundaries (so an error event appended after a cut parses),
    so the bytes after the last blank line wait here until their event completes. An
    upstream that never sends a blank line must not make that wait unbounded: past
    ``max_event_bytes`` :attr:`overflow` is set and the relay ends the stream with a typed
    error event. Only each new chunk (plus two bytes before it) is searched for a
    boundary, and held pieces are joined once, when their event completes: linear time.
    """

    __slots__ = ("_max", "_pieces", "_size", "overflow")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._pieces: list[bytes] = []
        self._size = 0
        self.overflow = False

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to relay now (up to the last complete event); the rest is held."""
        if not self._pieces:
            end = event_boundary(chunk)
            if end == len(chunk):
                return chunk
            self._keep(chunk[end:])
            return chunk[:end]
        tail = self._pieces[-1][-2:]
        end = event_boundary(tail + chunk)
        if end <= len(tail):
            self._keep(chunk)
            return b""
        cut = end - len(tail)
        out = b"".join(self._pieces) + chunk[:cut]
        self._pieces, self._size = [], 0
        self._keep(chunk[cut:])
        return out

    def _keep(self, data: bytes) -> None:
        if not data:
            return
        self._pieces.append(data)
        self._size += len(data)
        if self._size > self._max:
            self.overflow = True
            self._pieces, self._size = [], 0  # what is dropped is never relayed

    @property
    def size(self) -> int:
        """Bytes held now."""
        return self._size

    def rest(self) -> bytes:
        """The held bytes (the stream ended without completing their event)."""
        out = b"".join(self._pieces)
        self._pieces, self._size = [], 0
        return out


def event_boundary(data: bytes) -> int:
    """Index just past the last complete SSE event in ``data`` (0: none complete).

    An event ends with a blank line; with ``\\n``, ``\\r\\n`` or ``\\r`` line endings a blank
    line shows as ``\\n\\n``, ``\\n\\r`` (the second line ending being ``\\r`` or ``\\r\\n``)
    or ``\\r\\r``."""
    end = max(data.rfind(b"\n\n"), data.rfind(b"\n\r"), data.rfind(b"\r\r"))
    if end < 0:
        return 0
    end += 2
    if data[end - 1] == 13 and data[end : end + 1] == b"\n":
        end += 1  # keep the \r\n of the blank line together
    return end
