"""Response guardrails on what agents actually read, not only ``application/json``.

A whole (non-streamed) answer is first decoded (``Content-Encoding`` gzip, deflate, br,
stacked as the header lists them, never past a size bound: a compression bomb is refused,
not inflated), then scanned by what it is:

- JSON (``application/json``, ``*/*+json``, and any text a client's ``.json()`` parses):
  every string value and key, in every reading a client makes (``answer_json``: its
  declared charset, and the encoding JSON detection finds in the bytes); a body that
  claims JSON but no client parses is scanned as text;
- HTML (``text/html``, ``application/xhtml+xml``) and SSE read whole: what their reader
  shows (``answer_formats``);
- other text (``text/*``, XML, JavaScript, YAML, form data): the text in its charset, and
  in the encoding its byte order mark names when that differs (a browser reads the BOM).

Anything else (images, archives, ``application/octet-stream``, an unknown encoding or
charset, a body past the bound) cannot be scanned: :class:`Unscannable` says why, and the
caller applies the policy's ``failMode`` (closed: refuse; open: pass, counted and audited).

A redaction re-encodes the body in its charset and sends it uncompressed (the caller drops
``Content-Encoding``); an answer with nothing to change goes out as the upstream sent it.
"""

from __future__ import annotations

import codecs
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from haltgate.governance.guardrails.answer_formats import scan_form, scan_html, scan_sse
from haltgate.governance.guardrails.answer_json import (
    NOT_PARSED,
    looks_like_json,
    parse_answer_json,
    scan_answer_json,
    scan_json_lines,
    writable_codec,
)
from haltgate.governance.guardrails.base import Channel, ScanResult
from haltgate.governance.guardrails.engine import Guardrails
from haltgate.governance.strict_json import repeats_a_key

__all__ = [
    "MAX_DECODED_BYTES",
    "BodyScan",
    "StreamDecoder",
    "Unscannable",
    "decode_content",
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
    audit): ``encoding``, ``charset``, ``type``, ``size``, ``corrupt`` or ``headers`` (more
    header text than the header scan reads, see answer_headers)."""

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
_FORM = "form"
_SSE_START = re.compile(r"\ufeff?(?::[^\r\n]*\r?\n|(?:event|id|retry):[^\r\n]*\r?\n)*data:")
_MARKUP_TYPES = frozenset({"text/html", "application/xhtml+xml", "application/xml", "text/xml"})

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
    if media_type in _MARKUP_TYPES or media_type.endswith("+xml"):
        return _HTML  # HTML and XML: their readers resolve character references
    if media_type == "text/event-stream":
        return _SSE
    if media_type == "application/x-www-form-urlencoded":
        return _FORM
    if media_type.startswith("text/") or media_type in _TEXT_TYPES or media_type.endswith("+xml"):
        return _TEXT
    return None


_TYPED: dict[str | None, tuple[str, str | None, str | None]] = {}
_TYPED_MAX = 256


def _typed(content_type: str | None) -> tuple[str, str | None, str | None]:
    """(media type, charset, kind) of a Content-Type value, remembered (an upstream sends
    the same one answer after answer; bounded, emptied when full)."""
    known = _TYPED.get(content_type)
    if known is None:
        media, charset = _media_type(content_type)
        known = (media, charset, _kind(media))
        if len(_TYPED) >= _TYPED_MAX:
            _TYPED.clear()
        _TYPED[content_type] = known
    return known


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
    media, charset, kind = _typed(content_type)
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
        if kind == _JSON or (kind in (_TEXT, _SSE) and looks_like_json(decoded, text))
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
        if other is None and kind == _HTML and charset is None:
            other = _meta_reading(decoded, codec)
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
        return scan_html(g, text, channel)
    if kind == _SSE or _SSE_START.match(text):
        # An SDK reads a streamed call's answer as events whatever its Content-Type (the
        # OpenAI SDK does): a body that starts as an event stream is read as one.
        return scan_sse(g, text, channel)
    if kind == _FORM:
        return scan_form(g, text, channel)
    lines = scan_json_lines(g, text, channel)
    if lines is not None:
        return lines
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


_META_CHARSET = re.compile(
    rb"""<meta\b[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]{1,40})""", re.IGNORECASE
)


def _meta_reading(decoded: bytes, codec: str) -> str | None:
    """An HTML page without a header charset as a browser reads it: in the encoding its
    ``<meta charset>`` (or ``http-equiv`` content) names in the first 1024 bytes, when
    that differs from ``codec`` (``None``: none, unknown, or the same reading). UTF-16
    there is read as UTF-8, as browsers do."""
    m = _META_CHARSET.search(decoded, 0, 1024)
    if m is None:
        return None
    try:
        named = codecs.lookup(m.group(1).decode("ascii")).name
    except LookupError:
        return None
    if named.startswith("utf-16") or named == codecs.lookup(codec).name:
        return None
    return decoded.decode(named, "replace")


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


_BOM_OR_NUL_FIRST = frozenset({0x00, 0xEF, 0xFE, 0xFF})


def reads_as_plain_utf8(decoded: bytes) -> bool:
    """True only when ``json.detect_encoding(decoded)`` is ``utf-8`` and there is no UTF-8
    BOM, told from the first two bytes: every BOM starts with 00, EF, FE or FF, and UTF-16
    and UTF-32 are detected by a NUL among them. ``False`` says nothing (ask detection)."""
    return len(decoded) >= 2 and decoded[0] not in _BOM_OR_NUL_FIRST and decoded[1] != 0


def _scan_json_body(
    g: Guardrails, decoded: bytes, text: str, codec: str, channel: Channel
) -> tuple[ScanResult, str | None, str] | None:
    """(result, redacted text or None, its codec) of a JSON answer (``None``: no client
    parses it), read every way a client
    reads it: in its declared charset (aiohttp, requests) and in the encoding JSON
    detection finds in the bytes (``json.loads(bytes)``: httpx, the OpenAI SDK), which
    honours a BOM and UTF-16/32 whatever the header says."""
    if reads_as_plain_utf8(decoded):  # the everyday answer: what detection says, told
        detected, other_reading = "utf-8", codec != "utf-8"
    else:
        detected = json.detect_encoding(decoded)
        other_reading = codecs.lookup(detected).name != codec or decoded.startswith(codecs.BOM_UTF8)
    readings: list[tuple[Any, str, str]] = []
    obj = parse_answer_json(text)
    if obj is not NOT_PARSED:
        readings.append((obj, codec, text))
    if other_reading:
        try:
            other_text = decoded.decode(detected, "surrogatepass")
            other = parse_answer_json(other_text)
        except UnicodeError:
            other = NOT_PARSED
        if other is not NOT_PARSED and (not readings or other != readings[0][0]):
            readings.append((other, writable_codec(detected), other_text))
    if not readings:
        return None
    (obj, obj_codec, obj_text), rest = readings[0], readings[1:]
    result = scan_answer_json(g, obj, channel)
    for other, _, _ in rest:
        extra = scan_answer_json(g, other, channel)
        result = _both(result, extra, extra.redacted_obj is not None)
    if obj_codec != codec:  # the declared charset's reading is not JSON: it is text
        extra = g.scan(text, "response", channel=channel)
        result = _both(result, extra, extra.redacted_text is not None)
    if result.blocked:
        return result, None, codec
    written = result.redacted_obj
    if written is None:
        # A repeated key reads as its first value to some parsers (simdjson's on-demand
        # API, several Java and Go libraries) and as its last to others (orjson, Python,
        # JavaScript, encoding/json); the scan read the last. Written back with one value
        # per key, the answer reads one way, the way that was scanned.
        if not repeats_a_key(obj_text, obj):
            return result, None, codec
        written = obj
    try:
        new = orjson.dumps(written).decode()
    except (TypeError, orjson.JSONEncodeError):  # NaN kept, lone surrogates escaped
        new = json.dumps(written)
    return result, new, obj_codec
