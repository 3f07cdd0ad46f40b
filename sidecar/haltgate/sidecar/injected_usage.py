"""Usage the sidecar asks for on the agent's behalf, metered and never shown to it.

An OpenAI-style stream reports token usage only when the request sets
``stream_options.include_usage``. When the agent did not, the sidecar sets it (so the
stream is metered exactly, not estimated) and then takes out of the stream what that
option added, so the agent receives the bytes it would have received directly:

- the last chunk, with empty ``choices`` and the ``usage`` object: read, not relayed;
- the ``"usage":null`` member upstreams add to every other chunk: cut out of the bytes
  (the event is re-encoded only when its JSON is not laid out on one ``data:`` line).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from haltgate.sidecar.sse import SSEEvent

__all__ = ["HiddenUsage", "ask_for_usage"]

# ``,"usage":null`` as the last member of a one-line JSON object: the ``}`` after it is
# the last character of the data line, so it closes the top-level object.
_TRAILING_NULL = re.compile(rb',[ \t]*"usage"[ \t]*:[ \t]*null(?=[ \t]*\}[ \t]*[\r\n])')


_NULL_TAIL = b',"usage":null}\n\n'
"""The end of an event whose last data line ends the JSON with ``"usage":null``: that
``}`` is the JSON's last character, so it closes the top-level object."""


def ask_for_usage(body: dict[str, Any]) -> bytes:
    """The request body with ``stream_options.include_usage`` set (other options kept)."""
    options = body.get("stream_options")
    return orjson.dumps(
        {
            **body,
            "stream_options": {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            },
        }
    )


class HiddenUsage:
    """Takes what ``include_usage`` added out of a relayed stream, event by event."""

    __slots__ = ("hidden", "reencoded")

    def __init__(self) -> None:
        self.hidden = 0
        """Usage chunks read and not relayed."""
        self.reencoded = 0
        """Events re-encoded to take ``usage`` out (not laid out on one line)."""

    def visible(self, raw: bytes, event: SSEEvent | None, obj: Any) -> bytes:
        """The bytes of one framed event the agent receives (``b""``: none).

        ``obj`` is the event's parsed JSON data (anything else: relayed unchanged)."""
        if not isinstance(obj, dict) or "usage" not in obj:
            return raw
        usage = obj["usage"]
        if isinstance(usage, dict) and not obj.get("choices"):
            self.hidden += 1
            return b""
        if usage is None:
            if raw.endswith(_NULL_TAIL):  # OpenAI's layout: compact, usage last
                return raw[: -len(_NULL_TAIL)] + b"}\n\n"
            if _one_data_line(raw):
                m = _TRAILING_NULL.search(raw)
                if m is not None:
                    return raw[: m.start()] + raw[m.end() :]
        self.reencoded += 1
        assert event is not None
        name = b"" if event.event == "message" else b"event: " + event.event.encode() + b"\n"
        return name + b"data: " + orjson.dumps(_without_usage(obj)) + b"\n\n"

    def visible_event(self, event: SSEEvent, obj: Any) -> SSEEvent | None:
        """The parsed event the agent receives (``None``: none), for streams that are
        re-encoded anyway (response guardrails)."""
        if not isinstance(obj, dict) or "usage" not in obj:
            return event
        if isinstance(obj["usage"], dict) and not obj.get("choices"):
            self.hidden += 1
            return None
        return SSEEvent(event.event, orjson.dumps(_without_usage(obj)).decode())


def _without_usage(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "usage"}


def _one_data_line(raw: bytes) -> bool:
    """The event has exactly one ``data:`` field line (JSON text cannot hold a raw line
    break, so every line start in it is a field)."""
    lines = raw.startswith(b"data:") + raw.count(b"\ndata:") + raw.count(b"\rdata:")
    return lines == 1
