"""Response guardrails on what agents actually read, not only ``application/json``.

A whole (non-streamed) answer is first decoded (``Content-Encoding`` gzip, deflate, br,
stacked as the header lists them, never past a size bound: a compression bomb is refused,
not inflated), then scanned by what it is:

- JSON (``application/json``, ``*/*+json``): every string value (``Guardrails.scan_json``);
  a body that claims JSON but does not parse is scanned as text;
- HTML (``text/html``, ``application/xhtml+xml``): the text content, comments and attribute
  values, each decoded from its character references; markup is left out of the scan and
  untouched by redaction;
- SSE (``text/event-stream``, read whole): each event's data, as JSON when it parses;
- other text (``text/*``, XML, JavaScript, YAML, form data): the text in its charset.

Anything else (images, archives, ``application/octet-stream``, an unknown encoding or
charset, a body past the bound) cannot be scanned: :class:`Unscannable` says why, and the
caller applies the policy's ``failMode`` (closed: refuse; open: pass, counted and audited).

A redaction re-encodes the body in its charset and sends it uncompressed (the caller drops
``Content-Encoding``); an answer with nothing to change goes out as the upstream sent it.
"""

from __future__ import annotations

import codecs
import html
import json
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from haltgate.governance.guardrails.base import Channel, ScanResult
from haltgate.governance.guardrails.engine import Guardrails
from haltgate.governance.guardrails.json_strings import MIN_FINDING_CHARS

__all__ = [
    "MAX_DECODED_BYTES",
    "BodyScan",
    "StreamDecoder",
    "Unscannable",
    "decode_content",
    "scan_answer_json",
    "scan_decoded_body",
    "scan_response_body",
]

MAX_DECODED_BYTES = 8 * 1024 * 1024
"""Largest decompressed answer scanned (bytes); past it the answer is unscannable. The
detectors scan at most 2 Mi characters at once (``engine.MAX_SCAN_CHARS``) anyway, so a
larger text could not be scanned whole either."""

_CHUNK = 64 * 1024


class Unscannable(Exception):
    """An answer the guardrails cannot read. ``reason`` is a bounded label (metric,
    audit): ``encoding``, ``charset``, ``type``, ``size`` or ``corrupt``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class BodyScan:
    """What to send and what the scan found."""

    body: bytes
    """The answer to relay: the upstream's bytes unless a redaction changed them."""
    decoded: bool
    """True when `body` is the decoded form (drop ``Content-Encoding``)."""
    result: ScanResult


# ---------------------------------------------------------------------- decoding


def decode_content(
    body: bytes, content_encoding: str | None, limit: int = MAX_DECODED_BYTES
) -> bytes:
    """``body`` without its content codings (applied in header order, undone in reverse),
    at most ``limit`` bytes; raises :class:`Unscannable`."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    for coding in reversed(codings):
        if coding == "identity":
            continue
        decoder = _DECODERS.get(coding)
        if decoder is None:
            raise Unscannable("encoding", f"content coding {coding[:40]!r} is not supported")
        body = decoder(body, limit)
    if len(body) > limit:
        raise Unscannable("size", f"answer exceeds {limit} bytes")
    return body


def _zlib(body: bytes, limit: int, wbits: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = bytearray()
    data = body
    try:
        while True:
            out += d.decompress(data, _CHUNK)
            if len(out) > limit:
                raise Unscannable("size", f"decoded answer exceeds {limit} bytes")
            data = d.unconsumed_tail
            if not data:
                break
        if d.unused_data and wbits == 31:
            # Concatenated gzip members (allowed by RFC 1952): decode the rest too.
            out += _zlib(d.unused_data, limit - len(out), wbits)
        out += d.flush()
    except zlib.error as e:
        raise Unscannable("corrupt", f"cannot decode: {e}") from e
    if len(out) > limit:
        raise Unscannable("size", f"decoded answer exceeds {limit} bytes")
    return bytes(out)


def _gzip(body: bytes, limit: int) -> bytes:
    return _zlib(body, limit, 31)


def _deflate(body: bytes, limit: int) -> bytes:
    # "deflate" is zlib-wrapped by the RFC; some servers send raw deflate: try both.
    try:
        return _zlib(body, limit, 15)
    except Unscannable as e:
        if e.reason != "corrupt":
            raise
        return _zlib(body, limit, -15)


def _brotli(body: bytes, limit: int) -> bytes:
    try:
        import brotli
    except ImportError as e:  # the dependency is declared; a broken image fails closed
        raise Unscannable("encoding", "brotli is not installed") from e
    d = brotli.Decompressor()
    out = bytearray()
    try:
        out += d.process(body, output_buffer_limit=_CHUNK)
        while not d.is_finished():
            if len(out) > limit:
                raise Unscannable("size", f"decoded answer exceeds {limit} bytes")
            more = d.process(b"", output_buffer_limit=_CHUNK)
            if not more:
                raise Unscannable("corrupt", "brotli stream ends early")
            out += more
    except brotli.error as e:
        raise Unscannable("corrupt", f"cannot decode: {e}") from e
    if len(out) > limit:
        raise Unscannable("size", f"decoded answer exceeds {limit} bytes")
    return bytes(out)


_DECODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _deflate,
    "br": _brotli,
}


class StreamDecoder:
    """Undoes the content codings of a streamed answer piece by piece (SSE over gzip), so
    the stream guardrails read events, not compressed bytes. Each `feed` may produce at
    most ``limit`` bytes (a bomb in one chunk is refused, not inflated); raises
    :class:`Unscannable` for an unknown coding or a corrupt stream."""

    def __init__(self, content_encoding: str, limit: int = MAX_DECODED_BYTES) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        self._stages: list[_Inflater] = []
        for coding in reversed(codings):
            if coding == "identity":
                continue
            if coding not in _DECODERS:
                raise Unscannable("encoding", f"content coding {coding[:40]!r} is not supported")
            self._stages.append(_Inflater(coding))
        self._limit = limit

    def feed(self, data: bytes) -> bytes:
        """The decoded bytes ``data`` completes (possibly empty)."""
        for stage in self._stages:
            data = stage.feed(data, self._limit)
        return data


class _Inflater:
    """One streaming content coding."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._z: Any = None
        self._br: Any = None
        if coding == "br":
            try:
                import brotli
            except ImportError as e:
                raise Unscannable("encoding", "brotli is not installed") from e
            self._br = brotli.Decompressor()
        elif coding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(31)
        # deflate: zlib-wrapped or raw, decided by the first byte (see feed)

    def feed(self, data: bytes, limit: int) -> bytes:
        if not data:
            return b""
        if self._br is not None:
            return self._feed_brotli(data, limit)
        if self._z is None:  # deflate: 0x78 starts a zlib header (CMF, 32 KiB window)
            self._z = zlib.decompressobj(15 if data[0] == 0x78 else -15)
        out = bytearray()
        try:
            while data:
                out += self._z.decompress(data, _CHUNK)
                if len(out) > limit:
                    raise Unscannable("size", f"a decoded piece exceeds {limit} bytes")
                data = self._z.unconsumed_tail
                if not data and self._z.eof and self._z.unused_data and self._coding != "deflate":
                    data = self._z.unused_data  # the next gzip member
                    self._z = zlib.decompressobj(31)
        except zlib.error as e:
            raise Unscannable("corrupt", f"cannot decode: {e}") from e
        return bytes(out)

    def _feed_brotli(self, data: bytes, limit: int) -> bytes:
        import brotli

        out = bytearray()
        try:
            out += self._br.process(data, output_buffer_limit=_CHUNK)
            while not self._br.is_finished():
                if len(out) > limit:
                    raise Unscannable("size", f"a decoded piece exceeds {limit} bytes")
                more = self._br.process(b"", output_buffer_limit=_CHUNK)
                if not more:
                    break  # the rest needs the next piece of input
                out += more
        except brotli.error as e:
            raise Unscannable("corrupt", f"cannot decode: {e}") from e
        if len(out) > limit:
            raise Unscannable("size", f"a decoded piece exceeds {limit} bytes")
        return bytes(out)


# ---------------------------------------------------------------------- what it is


_JSON = "json"
_HTML = "html"
_SSE = "sse"
_TEXT = "text"

_TEXT_TYPES = frozenset(
    {
        "application/xml",
        "application/javascript",
        "application/ecmascript",
        "application/x-javascript",
        "application/yaml",
        "application/x-yaml",
        "application/x-www-form-urlencoded",
        "application/x-ndjson",
        "application/jsonl",
        "application/graphql",
        "application/sql",
        "application/toml",
        "application/csv",
    }
)


def _kind(media_type: str) -> str | None:
    if (
        media_type == "application/json"
        or media_type.endswith("+json")
        or media_type == "text/json"
    ):
        return _JSON
    if media_type in ("text/html", "application/xhtml+xml"):
        return _HTML
    if media_type == "text/event-stream":
        return _SSE
    if media_type.startswith("text/") or media_type in _TEXT_TYPES or media_type.endswith("+xml"):
        return _TEXT
    return None


def _media_type(content_type: str | None) -> tuple[str, str | None]:
    """(media type lower-cased, charset or None) of a Content-Type header value."""
    if not content_type:
        return "", None
    head, _, params = content_type.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower() or None
    return head.strip().lower(), charset


# ---------------------------------------------------------------------- the scan


def scan_response_body(
    guardrails: Guardrails,
    body: bytes,
    content_type: str | None,
    content_encoding: str | None,
    *,
    limit: int = MAX_DECODED_BYTES,
) -> BodyScan:
    """Decode and scan a whole answer in the response direction; raises
    :class:`Unscannable`."""
    decoded = decode_content(body, content_encoding, limit)
    scanned = scan_decoded_body(guardrails, decoded, content_type)
    if scanned.body is decoded:
        return BodyScan(body, False, scanned.result)
    return BodyScan(scanned.body, decoded is not body, scanned.result)


def scan_decoded_body(
    guardrails: Guardrails,
    decoded: bytes,
    content_type: str | None,
    *,
    channel: Channel = "document",
) -> BodyScan:
    """Scan an answer already without its content codings; `BodyScan.body` is `decoded`
    itself (the same object) when nothing changed. Raises :class:`Unscannable`.
    `channel`: ``document`` for what a tool, a server or a page answers (default),
    ``request`` for a model's own answer (see `base.Channel`)."""
    media, charset = _media_type(content_type)
    kind = _kind(media)
    if kind is None:
        if media:
            raise Unscannable("type", f"content type {media[:60]!r} cannot be scanned")
        # No Content-Type: scanned as text when it is text.
        try:
            decoded.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Unscannable("type", "binary answer without a content type") from e
        kind = _TEXT
    codec = _codec(charset or "utf-8")
    try:
        text = decoded.decode(codec, "surrogateescape")
    except UnicodeError as e:
        raise Unscannable("charset", f"not valid {codec}") from e
    # A client's .json() reads JSON whatever the Content-Type says.
    as_json = (
        _scan_json_body(guardrails, decoded, text, codec, channel)
        if kind == _JSON or (kind == _TEXT and _looks_like_json(decoded, text))
        else None
    )
    new_text: str | None
    if as_json is not None:
        result, new_text, codec = as_json
    else:  # a body that claims JSON but no client parses is read as text
        kind = _TEXT if kind == _JSON else kind
        result, new_text = _scan_text_kind(guardrails, kind, text, channel)
        # A BOM overrides the declared charset for a browser (WHATWG decode): that
        # reading is scanned too when it differs.
        other = _bom_reading(decoded, codec)
        if other is not None:
            extra, extra_new = _scan_text_kind(guardrails, kind, other, channel)
            result = _both(result, extra, extra_new is not None)
    if new_text is None or result.blocked:
        return BodyScan(decoded, False, result)
    try:
        out = new_text.encode(codec, "surrogateescape")
    except UnicodeError as e:  # the redacted text cannot go back into its charset
        raise Unscannable("charset", f"cannot re-encode as {codec}") from e
    return BodyScan(out, False, result)


def _scan_text_kind(
    g: Guardrails, kind: str, text: str, channel: Channel
) -> tuple[ScanResult, str | None]:
    if kind == _HTML:
        return _scan_html(g, text, channel)
    if kind == _SSE:
        return _scan_sse(g, text, channel)
    result = g.scan(text, "response", channel=channel)
    return result, result.redacted_text


_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _bom_reading(decoded: bytes, codec: str) -> str | None:
    """The text as a browser reads it when a byte order mark names another encoding than
    ``codec`` (``None``: no BOM, or the same reading)."""
    for bom, bom_codec in _BOMS:
        if decoded.startswith(bom):
            if codecs.lookup(bom_codec).name == codecs.lookup(codec).name:
                return None
            return decoded[len(bom) :].decode(bom_codec, "replace")
    return None


def _both(first: ScanResult, second: ScanResult, second_redacts: bool) -> ScanResult:
    """One verdict over two readings of the same answer. Only the first reading can be
    redacted: a second one that needs redaction (and does not block) is unscannable."""
    if second_redacts and not (first.blocked or second.blocked):
        raise Unscannable("charset", "the answer reads two ways and one needs redaction")
    return ScanResult(
        findings=first.findings + second.findings,
        blocked=first.blocked or second.blocked,
        redacted_text=first.redacted_text,
        risk=max(first.risk, second.risk),
        redacted_obj=first.redacted_obj,
        errors=first.errors + second.errors,
    )


def _codec(charset: str) -> str:
    try:
        return codecs.lookup(charset).name
    except LookupError as e:
        raise Unscannable("charset", f"charset {charset[:40]!r} is not known") from e


_NOT_PARSED = object()


def _parse_json(text: str) -> Any:
    """``text`` parsed as a client parses JSON: strictly (orjson) and, failing that, as
    Python's ``json`` does (a leading BOM, ``NaN``/``Infinity``, lone surrogates);
    ``_NOT_PARSED`` when neither can."""
    try:
        return orjson.loads(text.encode("utf-8", "surrogateescape"))
    except (orjson.JSONDecodeError, UnicodeError):
        pass
    try:
        return json.loads(text.removeprefix("\ufeff"))
    except (ValueError, RecursionError):
        return _NOT_PARSED


def _looks_like_json(decoded: bytes, text: str) -> bool:
    """Text that a client's ``.json()`` may read as JSON (its first character is ``{``
    or ``[``, in its charset or in the encoding JSON detection finds)."""
    start = text.lstrip("\ufeff \t\r\n")[:1]
    if start in ("{", "["):
        return True
    return decoded[:1] in (b"\x00", b"\xff", b"\xfe") and json.detect_encoding(decoded) != "utf-8"


def _scan_json_body(
    g: Guardrails, decoded: bytes, text: str, codec: str, channel: Channel
) -> tuple[ScanResult, str | None, str] | None:
    """(result, redacted text or None, its codec) of a JSON answer (``None``: no client
    parses it), read every way a client
    reads it: in its declared charset (aiohttp, requests) and in the encoding JSON
    detection finds in the bytes (``json.loads(bytes)``: httpx, the OpenAI SDK), which
    honours a BOM and UTF-16/32 whatever the header says."""
    detected = json.detect_encoding(decoded)
    readings: list[tuple[Any, str]] = []
    obj = _parse_json(text)
    if obj is not _NOT_PARSED:
        readings.append((obj, codec))
    if codecs.lookup(detected).name != codec or decoded.startswith(codecs.BOM_UTF8):
        try:
            other = _parse_json(decoded.decode(detected, "surrogatepass"))
        except UnicodeError:
            other = _NOT_PARSED
        if other is not _NOT_PARSED and (not readings or other != readings[0][0]):
            readings.append((other, _writable(detected)))
    if not readings:
        return None
    (obj, obj_codec), rest = readings[0], readings[1:]
    result = scan_answer_json(g, obj, channel)
    for other, _ in rest:
        extra = scan_answer_json(g, other, channel)
        result = _both(result, extra, extra.redacted_obj is not None)
    if obj_codec != codec:  # the declared charset's reading is not JSON: it is text
        extra = g.scan(text, "response", channel=channel)
        result = _both(result, extra, extra.redacted_text is not None)
    if result.redacted_obj is None or result.blocked:
        return result, None, codec
    try:
        new = orjson.dumps(result.redacted_obj).decode()
    except (TypeError, orjson.JSONEncodeError):  # NaN kept, lone surrogates escaped
        new = json.dumps(result.redacted_obj)
    return result, new, obj_codec


def scan_answer_json(g: Guardrails, obj: Any, channel: Channel = "document") -> ScanResult:
    """`Guardrails.scan_json` of an answer, its object keys too: a model reading a tool's
    JSON reads its keys (``{"<instruction>": 1}``), though requests' keys are not
    scanned. A redacted key is renamed in `redacted_obj`."""
    result = g.scan_json(obj, "response", channel=channel)
    keys = _object_keys(obj)
    if not keys or result.blocked:
        return result
    extra = g.scan_json(keys, "response", channel=channel)
    if not extra.findings and not extra.errors:
        return result
    redacted = result.redacted_obj
    if extra.redacted_obj is not None:
        renamed = {
            old: new for old, new in zip(keys, extra.redacted_obj, strict=True) if new != old
        }
        redacted = _rename_keys(obj if redacted is None else redacted, renamed)
    return ScanResult(
        findings=result.findings + extra.findings,
        blocked=extra.blocked,
        redacted_text=None,
        risk=max(result.risk, extra.risk),
        redacted_obj=redacted,
        errors=result.errors + extra.errors,
    )


def _object_keys(obj: Any) -> list[str]:
    """The distinct object keys of a document long enough to hold a finding, in order."""
    keys: dict[str, None] = {}
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                if isinstance(k, str) and len(k) >= MIN_FINDING_CHARS:
                    keys.setdefault(k, None)
                if isinstance(v, dict | list):
                    stack.append(v)
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))
    return list(keys)


def _rename_keys(obj: Any, renamed: dict[str, str]) -> Any:
    if isinstance(obj, dict):
        return {renamed.get(k, k): _rename_keys(v, renamed) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rename_keys(v, renamed) for v in obj]
    return obj


def _writable(detected: str) -> str:
    """The codec to write a redacted answer in when JSON detection read it (a BOM read
    is written without one, which detection still reads the same way)."""
    return {"utf-8-sig": "utf-8", "utf-16": "utf-16-le", "utf-32": "utf-32-le"}.get(
        detected, codecs.lookup(detected).name
    )


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


def _scan_html(g: Guardrails, source: str, channel: Channel) -> tuple[ScanResult, str | None]:
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


# ---------------------------------------------------------------------- SSE (whole)

_LINE = re.compile(r"\r\n|\r|\n")


def _scan_sse(g: Guardrails, text: str, channel: Channel) -> tuple[ScanResult, str | None]:
    """Each event's data (the ``data:`` lines joined by newlines), as JSON when it parses;
    a redacted event is written back with its data on one ``data:`` line per line."""
    events: list[tuple[list[str], list[str]]] = []  # (other lines, data lines)
    other: list[str] = []
    data: list[str] = []
    for line in _LINE.split(text):
        if line == "":
            if other or data:
                events.append((other, data))
            other, data = [], []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
        else:
            other.append(line)
    if other or data:
        events.append((other, data))
    subjects: list[Any] = []
    for _, lines in events:
        joined = "\n".join(lines)
        try:
            subjects.append(orjson.loads(joined))
        except orjson.JSONDecodeError:
            subjects.append(joined)
    result = scan_answer_json(g, subjects, channel)
    if result.redacted_obj is None:
        return result, None
    out: list[str] = []
    for (lines_other, lines_data), old, new in zip(
        events, subjects, result.redacted_obj, strict=True
    ):
        if new != old:
            lines_data = (new if isinstance(new, str) else orjson.dumps(new).decode()).split("\n")
        out.extend(lines_other)
        out.extend("data: " + d for d in lines_data)
        out.append("")
    return result, "\n".join(out) + "\n"
