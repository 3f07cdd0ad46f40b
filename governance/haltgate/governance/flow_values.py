"""The values of untrusted content, and the sink arguments that carry one of them.

For flow rules with ``action: deny-untrusted-values``: what an untrusted answer contains is
reduced to *values* (below), the values are kept as keyed hashes in a Bloom filter
(:class:`ValueFilter`), and a later sink call is refused when one of its arguments carries
one of them. The same extraction runs on both sides, so a value matches however it is
embedded (an address alone in ``to`` or inside a sentence of ``body``).

What counts as a value (normalised: NFKC, zero-width characters removed, case-folded):

- e-mail addresses;
- URLs (``scheme://host[:port]/path?query``, fragment dropped, host lower-cased) and,
  separately, their host;
- host names (``label.label.tld`` with an alphabetic TLD that is not a common file
  extension: ``report.pdf`` is a file name, not a host) and IPv4 addresses;
- long numbers: 9 or more digits, single spaces, dots, hyphens or brackets allowed
  between them (phone, account and card numbers; shorter numbers and dates are too common
  to mean anything), and IBAN-shaped account numbers (``DE89 3704 0044 ...``, spaces
  dropped);
- opaque tokens: runs of letters, digits and ``_-+=`` of 20 or more characters, or of 12
  or more mixing letters and digits (ids, keys, tracking codes). Ordinary words are not
  values: a summary the agent writes shares its words with what it read, and refusing on
  that would refuse everything;
- phrases: quoted strings in text (double, typographic or back quotes) and JSON string
  values, 6 to 512 characters. A phrase matches a sink argument only as the *whole*
  argument value (a subject line copied verbatim), never as a part of one.

Privacy and memory: no value is stored, only bits set by a BLAKE2b hash keyed with a
random per-run key (a file holding the filter cannot be read back, and testing a guess
needs the key). The filter has a fixed size (:data:`FILTER_BITS`): memory and the state
file stay bounded however much content a run reads; as it fills, false positives grow,
which refuses more, never less (fail closed). It has no false negatives.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import unicodedata
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

__all__ = [
    "FILTER_BITS",
    "MAX_SCANNED_CHARS",
    "ValueFilter",
    "ValuesUnreadable",
    "answer_values",
    "argument_values",
    "text_values",
]

FILTER_BITS: Final = 1 << 20
"""Bits of a run's filter (128 KiB). With :data:`PROBES` probes it holds 100 000 values at
a 0.7 % false-positive rate (measured: ``bench/flow_values.py``), 200 000 at 12 %."""
PROBES: Final = 7
MAX_SCANNED_CHARS: Final = 8 * 1024 * 1024
"""Largest untrusted answer (characters, after decoding) read for values; a larger one
cannot be read and closes the rule's sinks for the run (fail closed)."""
MIN_PHRASE: Final = 6
MAX_PHRASE: Final = 512
_MAX_DEPTH: Final = 64
_MAX_KEY: Final = 64

_INVISIBLE = dict.fromkeys(
    # Soft hyphen, zero-width and joiner characters, direction marks and isolates.
    [0x00AD, 0x180E, 0xFEFF, *range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x206A)]
)
_TOKEN = re.compile(
    # One pass, leftmost first; at one position the kinds are tried in this order, so an
    # address's domain is not a host of its own and a URL's parts are not tokens.
    r"(?P<email>[a-z0-9._%+-]+@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63})"
    r"|(?P<url>\b(?:https?|wss?|ftp)://[^\s<>\"'`{}|\\^\[\]()]+)"
    r"|(?P<ip>(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d))"
    r"|(?P<host>(?<![\w@.%-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?P<tld>[a-z]{2,63})"
    r"(?![\w-]))"
    r"|(?P<number>(?<![\w.])\d(?:[ .()-]{0,2}\d){8,}(?!\w))"
    r"|(?P<opaque>(?<![\w+=-])[\w+=-]{12,}(?![\w+=-]))"
)
_IBAN = re.compile(r"\b[a-z]{2}\d{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,3})?(?!\w)")
"""IBAN-shaped account numbers, in groups or in one piece (read on the whole text: their
letter groups look like plain words)."""
_DATE_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}\.\d{1,2}\.\d{4}")
_PLAIN_WORD_EDGES: Final = ".,;:!?\"'()[]{}<>*_"
_QUOTED = re.compile(r"\"([^\"\n]{6,512})\"|\u201c([^\u201d\n]{6,512})\u201d|`([^`\n]{6,512})`")
_SPACE = re.compile(r"\s+")
_FILE_EXTENSIONS: Final = frozenset(
    "pdf txt html htm doc docx xls xlsx ppt pptx csv json yaml yml xml md rst log png jpg "
    "jpeg gif svg webp bmp zip gz tgz tar bz2 xz rar exe dll bin iso sh py js ts jsx tsx "
    "java rb go rs cpp hpp css scss ini cfg conf toml lock tmp bak eml msg ics vcf mp3 mp4 "
    "wav mov avi mkv".split()
)


class ValuesUnreadable(Exception):
    """An untrusted answer whose values cannot be read (its type, encoding or size):
    the caller closes the rule's sinks for the run instead of guessing."""


# ---------------------------------------------------------------- extraction


def _clean(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold()


def _norm_phrase(text: str) -> str:
    return _SPACE.sub(" ", text).strip(" \t\r\n.,;:!?\"'`\u201c\u201d")


def _url_value(raw: str) -> tuple[str, str] | None:
    raw = raw.rstrip(".,;:!?'\"")
    try:
        parts = urlsplit(raw)
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}.get(parts.scheme)
    netloc = host if port is None or port == default else f"{host}:{port}"
    url = f"{parts.scheme}://{netloc}{unquote(parts.path) or '/'}"
    if parts.query:
        url += "?" + unquote(parts.query)
    return url[:MAX_PHRASE], host


def _token_words(text: str) -> str:
    """``text`` without its plain words (letters only, shorter than an opaque token): no
    token lies in one, and prose is mostly them, so the token scan reads far less. Runs of
    other words stay joined by a space (a number written in groups stays one)."""
    out: list[str] = []
    for word in text.split():
        if len(word) < 12 and word.strip(_PLAIN_WORD_EDGES).isalpha():
            if out and out[-1] != "\n":
                out.append("\n")
        else:
            out.append(word)
    return " ".join(out)


def _tokens(text: str) -> Iterator[str]:
    """Token values of already cleaned text."""
    for m in _IBAN.finditer(text):
        yield m.group().replace(" ", "")
    for m in _TOKEN.finditer(_token_words(text)):
        kind = m.lastgroup
        token = m.group()
        if kind == "email" or kind == "ip":
            yield token
        elif kind == "url":
            parsed = _url_value(token)
            if parsed is not None:
                yield from parsed
        elif kind == "host":
            if m.group("tld") not in _FILE_EXTENSIONS:
                yield token
        elif kind == "number":
            if not _DATE_PREFIX.match(token):
                yield "".join(c for c in token if c.isdigit())
        elif len(token) >= 20 or (
            any(c.isdigit() for c in token) and any(c.isalpha() for c in token)
        ):
            yield token


def text_values(text: str, *, quoted: bool = True) -> set[str]:
    """The values of free text: tokens, and (``quoted``) its quoted phrases."""
    text = _clean(text)
    if "%" in text:
        text = text + "\n" + unquote(text)
    out = set(_tokens(text))
    if quoted:
        for m in _QUOTED.finditer(text):
            phrase = _norm_phrase(next(g for g in m.groups() if g is not None))
            if len(phrase) >= MIN_PHRASE:
                out.add(phrase)
    return out


def _json_values(doc: Any, out: set[str], depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise ValuesUnreadable("JSON nested too deep")
    if isinstance(doc, str):
        out.update(text_values(doc))
        phrase = _norm_phrase(_clean(doc))
        if MIN_PHRASE <= len(phrase) <= MAX_PHRASE:
            out.add(phrase)
        stripped = doc.lstrip()
        if stripped[:1] in ("{", "[") and len(doc) <= MAX_SCANNED_CHARS:
            try:  # a tool result whose text is itself JSON (common in MCP)
                inner = orjson.loads(doc)
            except orjson.JSONDecodeError:
                return
            _json_values(inner, out, depth + 1)
    elif isinstance(doc, dict):
        for key, value in doc.items():
            out.update(text_values(str(key), quoted=False))  # keys are names, not phrases
            _json_values(value, out, depth + 1)
    elif isinstance(doc, list):
        for value in doc:
            _json_values(value, out, depth + 1)
    elif isinstance(doc, int) and not isinstance(doc, bool):
        out.update(text_values(str(doc), quoted=False))


def _media_type(content_type: str | None) -> tuple[str, str]:
    head, _, params = (content_type or "").partition(";")
    charset = "utf-8"
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"').lower()
    return head.strip().lower(), charset


def answer_values(body: bytes, content_type: str | None) -> set[str]:
    """The values of a whole untrusted answer, already without its content codings.

    JSON (and each SSE event's data) by its string values, HTML and other text as text
    (character references decoded); raises :class:`ValuesUnreadable` for what cannot be
    read as text (images, archives, an unknown charset) or is too large."""
    if not body:
        return set()
    media, charset = _media_type(content_type)
    try:
        text = body.decode(charset, "replace")
    except LookupError as e:
        raise ValuesUnreadable(f"unknown charset {charset[:40]!r}") from e
    if len(text) > MAX_SCANNED_CHARS:
        raise ValuesUnreadable(f"answer of {len(text)} characters")
    textual = (
        not media
        or media.startswith("text/")
        or media.endswith(("json", "+xml", "/xml", "javascript", "yaml", "x-www-form-urlencoded"))
    )
    if not textual or ("\ufffd" in text and not media.startswith("text/")):
        raise ValuesUnreadable(f"content type {media[:60] or 'none'!r} is not text")
    out: set[str] = set()
    if media == "text/event-stream":
        for line in text.splitlines():
            if line.startswith("data:"):
                _text_or_json(line[5:].strip(), out)
        return out
    if media.endswith("json"):
        _text_or_json(text, out)
        return out
    if "html" in media or "xml" in media:
        text = html.unescape(text)
    out.update(text_values(text))
    return out


def _text_or_json(text: str, out: set[str]) -> None:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        out.update(text_values(text))
        return
    _json_values(doc, out)


# ---------------------------------------------------------------- sink arguments


_PROTOCOL_HEADERS: Final = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "host",
        "keep-alive",
        "mcp-protocol-version",
        "mcp-session-id",
        "pragma",
        "proxy-connection",
        "te",
        "traceparent",
        "tracestate",
        "transfer-encoding",
        "upgrade",
        "user-agent",
    }
)
"""Headers that say how a request travels, not what it carries: never compared."""


def _key(key: Any) -> str:
    text = str(key)[:_MAX_KEY]
    return "".join(c if c.isprintable() and c not in "[]." else "_" for c in text)


def _walk(doc: Any, path: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    if depth > _MAX_DEPTH:
        return
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _walk(value, f"{path}.{_key(key)}" if path else _key(key), depth + 1)
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _walk(value, f"{path}[{i}]", depth + 1)
    else:
        yield path, doc


def _candidates(value: Any) -> Iterator[str]:
    """What of one argument value is compared: its tokens, and itself as a phrase."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        yield from text_values(str(value), quoted=False)
        return
    if not isinstance(value, str):
        return
    phrase = _norm_phrase(_clean(value))
    if MIN_PHRASE <= len(phrase) <= MAX_PHRASE:
        yield phrase
    yield from text_values(value, quoted=False)


def json_argument_values(doc: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(argument path, candidate value)`` of every leaf of a JSON document."""
    for leaf_path, value in _walk(doc, path):
        for candidate in _candidates(value):
            yield leaf_path, candidate


def argument_values(
    *,
    tool_arguments: Iterable[Any] = (),
    host: str | None = None,
    path: str = "",
    query: str = "",
    body: bytes = b"",
    content_type: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> Iterator[tuple[str, str]]:
    """``(argument path, candidate value)`` of a sink call, lazily.

    MCP tool calls: every leaf of ``arguments`` (``arguments.to``; ``tools[1].arguments.to``
    in a batch). HTTP: the host the agent chose (``url.host``; ``None`` for a policy
    upstream, whose host the operator chose), the path (``url.path``), each query value
    (``url.query.NAME``), the body (``body.KEY...`` for JSON, ``body.NAME`` for a form,
    ``body`` for text) and the header values that are not protocol headers
    (``headers.NAME``)."""
    arguments = list(tool_arguments)
    for i, args in enumerate(arguments):
        prefix = "arguments" if len(arguments) == 1 else f"tools[{i}].arguments"
        yield from json_argument_values(args, prefix)
    if host:
        for candidate in text_values(host, quoted=False):
            yield "url.host", candidate
    if path and path != "/":
        for candidate in text_values(unquote(path), quoted=False):
            yield "url.path", candidate
    for name, value in parse_qsl(query, keep_blank_values=False):
        for candidate in _candidates(value):
            yield f"url.query.{_key(name)}", candidate
    for name, value in headers:
        lower = name.lower()
        if lower in _PROTOCOL_HEADERS or lower.startswith("x-haltgate-"):
            continue
        for candidate in _candidates(value):
            yield f"headers.{_key(lower)}", candidate
    if body:
        yield from _body_values(body, content_type)


def _body_values(body: bytes, content_type: str | None) -> Iterator[tuple[str, str]]:
    media, charset = _media_type(content_type)
    try:
        text = body.decode(charset, "replace")
    except LookupError:
        text = body.decode("utf-8", "replace")
    if media == "application/x-www-form-urlencoded":
        for name, value in parse_qsl(text, keep_blank_values=False):
            for candidate in _candidates(value):
                yield f"body.{_key(name)}", candidate
        return
    if media.endswith("json") or text.lstrip()[:1] in ("{", "["):
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
        else:
            yield from json_argument_values(doc, "body")
            return
    for candidate in _candidates(text):
        yield "body", candidate


# ---------------------------------------------------------------- the filter


class ValueFilter:
    """A Bloom filter of keyed hashes of ``(rule, value)`` pairs: fixed size, no false
    negatives, no stored value. ``key``: the run's secret hash key."""

    __slots__ = ("bits", "count", "key")

    def __init__(self, key: bytes | None = None, bits: bytearray | None = None, count: int = 0):
        self.key = key if key is not None else os.urandom(32)
        self.bits = bits if bits is not None else bytearray(FILTER_BITS // 8)
        self.count = count
        """Values added that set a new bit (an upper bound of distinct values)."""

    def _probes(self, rule: str, value: str) -> Iterator[int]:
        digest = hashlib.blake2b(
            f"{rule}\x00{value}".encode("utf-8", "surrogatepass"), key=self.key, digest_size=16
        ).digest()
        h1 = int.from_bytes(digest[:8], "little")
        h2 = int.from_bytes(digest[8:], "little") | 1
        for i in range(PROBES):
            yield (h1 + i * h2) % FILTER_BITS

    def add(self, rule: str, value: str) -> bool:
        """Add one value; True when it set a new bit."""
        changed = False
        for bit in self._probes(rule, value):
            byte, mask = bit >> 3, 1 << (bit & 7)
            if not self.bits[byte] & mask:
                self.bits[byte] |= mask
                changed = True
        if changed:
            self.count += 1
        return changed

    def contains(self, rule: str, value: str) -> bool:
        return all(self.bits[b >> 3] & (1 << (b & 7)) for b in self._probes(rule, value))

    def fill(self) -> float:
        """Share of the bits set (false positives are about ``fill ** PROBES``)."""
        return int.from_bytes(self.bits, "little").bit_count() / FILTER_BITS

    def to_doc(self) -> dict[str, Any]:
        return {
            "key": base64.b64encode(self.key).decode(),
            "bits": base64.b64encode(zlib.compress(bytes(self.bits), 1)).decode(),
            "count": self.count,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ValueFilter:
        """The filter a :meth:`to_doc` document holds; ValueError when it is not one."""
        try:
            key = base64.b64decode(doc["key"], validate=True)
            bits = bytearray(zlib.decompress(base64.b64decode(doc["bits"], validate=True)))
            count = int(doc["count"])
        except (KeyError, TypeError, ValueError, zlib.error) as e:
            raise ValueError(f"malformed value filter: {e}") from e
        if len(key) != 32 or len(bits) != FILTER_BITS // 8:
            raise ValueError("value filter of the wrong size")
        return cls(key, bits, count)
