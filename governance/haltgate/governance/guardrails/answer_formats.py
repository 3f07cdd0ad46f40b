"""The text an HTML or XML page, a form and a whole event stream show their reader.

HTML and XML: the text content, comments and attribute values, each decoded from its
character references; markup is left out of the scan and untouched by redaction. A form:
its raw text and its decoded names and values. An event stream read
whole: each event's data (as JSON when it parses), its other lines too.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from haltgate.governance.guardrails.answer_json import (
    NOT_PARSED,
    dump_answer_json,
    parse_answer_json,
    scan_answer_json,
)
from haltgate.governance.guardrails.base import Channel, ScanResult
from haltgate.governance.guardrails.engine import Guardrails

__all__ = ["scan_form", "scan_html", "scan_sse"]

# ---------------------------------------------------------------------- HTML

# Markup tokens, in the order they are tried: comments, raw-text elements (their content is
# one segment, no character references), tags (attribute values are segments), and the
# rest is text.
_HTML_TOKEN = re.compile(
    r"<!--(?P<comment>.*?)(?:-->|\Z)"
    r"|<(?P<raw>script|style|textarea|title)\b[^>]*>(?P<rawtext>.*?)(?:</(?P=raw)\s*>|\Z)"
    r"|<[!?/]?[A-Za-z][^>]*>?",
    re.DOTALL | re.IGNORECASE,
)
_ATTRIBUTE_VALUE = re.compile(r"""=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))""")


@dataclass(slots=True)
class _Segment:
    start: int
    end: int
    text: str
    """Decoded text (character references resolved where HTML resolves them)."""
    escaped: bool
    """Write a redacted value back with character references (text and attributes)."""


def _html_segments(source: str) -> list[_Segment]:
    segments: list[_Segment] = []
    pos = 0

    def text(start: int, end: int, *, escaped: bool = True) -> None:
        if end > start:
            raw = source[start:end]
            segments.append(_Segment(start, end, html.unescape(raw) if escaped else raw, escaped))

    for m in _HTML_TOKEN.finditer(source):
        text(pos, m.start())
        if m.group("comment") is not None:
            text(m.start("comment"), m.end("comment"), escaped=False)
        elif m.group("raw") is not None:
            start = m.start("rawtext")
            tag_end = source.index(">", m.start()) + 1 if ">" in m.group(0) else m.end()
            _attributes(source, m.start(), tag_end, segments)
            text(start, m.end("rawtext"), escaped=m.group("raw").lower() in ("textarea", "title"))
        else:
            _attributes(source, m.start(), m.end(), segments)
        pos = m.end()
    text(pos, len(source))
    return segments


def _attributes(source: str, start: int, end: int, out: list[_Segment]) -> None:
    for a in _ATTRIBUTE_VALUE.finditer(source, start, end):
        group = next(g for g in (1, 2, 3) if a.group(g) is not None)
        s, e = a.span(group)
        if e > s:
            out.append(_Segment(s, e, html.unescape(source[s:e]), True))


def scan_html(g: Guardrails, source: str, channel: Channel) -> tuple[ScanResult, str | None]:
    segments = _html_segments(source)
    result = g.scan_json([s.text for s in segments], "response", channel=channel)
    redacted: Sequence[Any] | None = result.redacted_obj
    if redacted is None:
        return result, None
    parts: list[str] = []
    pos = 0
    for segment, new in zip(segments, redacted, strict=True):
        if new == segment.text:
            continue
        parts.append(source[pos : segment.start])
        parts.append(
            html.escape(new, quote=True) if segment.escaped else new.replace("-->", "-- >")
        )
        pos = segment.end
    parts.append(source[pos:])
    return result, "".join(parts)


# ---------------------------------------------------------------------- forms


def scan_form(g: Guardrails, text: str, channel: Channel) -> tuple[ScanResult, str | None]:
    """A form-encoded answer (an OAuth token endpoint's) read raw and as its client parses
    it (``parse_qsl``: ``+`` and ``%XX`` decoded); a redacted pair is written back encoded."""
    pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
    flat = [part for pair in pairs for part in pair]
    result = g.scan_json([text, *flat], "response", channel=channel)
    if result.redacted_obj is None:
        return result, None
    raw, *parts = result.redacted_obj
    if parts == flat:
        return result, raw
    return result, urllib.parse.urlencode(list(zip(parts[::2], parts[1::2], strict=True)))


# ---------------------------------------------------------------------- SSE (whole)

_LINE = re.compile(r"\r\n|\r|\n")


def scan_sse(g: Guardrails, text: str, channel: Channel) -> tuple[ScanResult, str | None]:
    """Each event's data (the ``data:`` lines joined by newlines), as JSON when it parses
    (as a client's ``json.loads`` parses it), and its other lines (comments, ``event:``,
    anything a raw reader of the body reads); a leading BOM is dropped first, as an
    EventSource does. A redacted event is written back with its data on one ``data:``
    line per line."""
    events: list[tuple[list[str], list[str]]] = []  # (other lines, data lines)
    other: list[str] = []
    data: list[str] = []
    for line in _LINE.split(text.removeprefix("\ufeff")):
        if line == "":
            if other or data:
                events.append((other, data))
            other, data = [], []
        elif line.startswith("data:") or line == "data":
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
        else:
            other.append(line)
    if other or data:
        events.append((other, data))
    subjects: list[list[Any]] = []
    for lines_other, lines_data in events:
        joined = "\n".join(lines_data)
        parsed = parse_answer_json(joined)
        subjects.append(["\n".join(lines_other), joined if parsed is NOT_PARSED else parsed])
    result = scan_answer_json(g, subjects, channel)
    if result.redacted_obj is None:
        return result, None
    out: list[str] = []
    for (lines_other, lines_data), (old_other, old), (new_other, new) in zip(
        events, subjects, result.redacted_obj, strict=True
    ):
        if new != old:
            lines_data = (new if isinstance(new, str) else dump_answer_json(new).decode()).split(
                "\n"
            )
        out.extend(new_other.split("\n") if new_other != old_other else lines_other)
        out.extend("data: " + d for d in lines_data)
        out.append("")
    return result, "\n".join(out) + "\n"
