"""JSON answers read as their clients read them.

A client parses an answer's JSON strictly (orjson, the MCP SDKs) or as Python's ``json``
does (httpx's and the OpenAI SDK's ``.json()``: a leading BOM, ``NaN``/``Infinity``, lone
surrogates, UTF-16/32 detected from the bytes whatever the Content-Type says):
`parse_answer_json` accepts what any of them accepts. `scan_answer_json` scans a parsed
answer, its object keys too (a model reads a tool's keys as well as its values).
"""

from __future__ import annotations

import base64
import codecs
import json
from typing import Any

import orjson

from haltgate.governance.guardrails.base import Channel, ScanResult
from haltgate.governance.guardrails.engine import Guardrails
from haltgate.governance.guardrails.json_strings import MIN_FINDING_CHARS

__all__ = [
    "NOT_PARSED",
    "dump_answer_json",
    "looks_like_json",
    "parse_answer_json",
    "scan_answer_json",
    "scan_json_lines",
    "writable_codec",
]

NOT_PARSED: Any = object()
"""What `parse_answer_json` returns when no client parses the text."""


def parse_answer_json(data: str | bytes) -> Any:
    """``data`` parsed as a client parses JSON: strictly (orjson) and, failing that, as
    Python's ``json`` does (a leading BOM, ``NaN``/``Infinity``, lone surrogates; bytes in
    UTF-16/32 by detection); ``NOT_PARSED`` when neither can."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # also a str with lone surrogates
        pass
    try:
        return json.loads(data.removeprefix("\ufeff") if isinstance(data, str) else data)
    except (ValueError, RecursionError):
        return NOT_PARSED


def dump_answer_json(obj: Any) -> bytes:
    """``obj`` written back as JSON; what orjson cannot write (a lone surrogate a lenient
    parse kept) is written as Python's ``json`` writes it."""
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(obj).encode()


def looks_like_json(decoded: bytes, text: str) -> bool:
    """Text that a client's ``.json()`` may read as JSON (its first character is ``{``
    or ``[``, in its charset or in the encoding JSON detection finds)."""
    start = text.lstrip("\ufeff \t\r\n")[:1]
    if start in ("{", "["):
        return True
    return decoded[:1] in (b"\x00", b"\xff", b"\xfe") and json.detect_encoding(decoded) != "utf-8"


_NESTED_DEPTH = 2
"""JSON inside a JSON string (inside a JSON string) is read; deeper is left as text."""

CLEAN_KEYS_MEMO = "answer_keys"
"""`Guardrails.clean_memo` of the key lists (with their channel) a policy's response
guardrails found clean as a whole: an upstream answers in the same shape call after call
(``choices``, ``finish_reason``, ``prompt_tokens_details``...), and scanning its keys
again cost ~50 us per answer. The
whole list is the memo's key (the keys are scanned joined, as one text), so a hit means
exactly the text scanned before; only for policies whose response detectors are
deterministic (`Guardrails.deterministic`). Emptied when full."""
_CLEAN_KEYS_MAX_ENTRIES = 256
_CLEAN_KEYS_MAX_CHARS = 4096


def scan_answer_json(g: Guardrails, obj: Any, channel: Channel = "document") -> ScanResult:
    """`Guardrails.scan_json` of an answer, with what its reader also reads: JSON held in
    a string (an MCP text result often is a JSON document: whoever parses it reads its
    ``\\u`` escapes) scanned as the document it holds, object keys (a model reading a
    tool's JSON reads them: ``{"<instruction>": 1}``), and MCP resource ``blob`` values
    decoded from base64 when they hold UTF-8 text (the client decodes them whole; the
    detectors' own base64 spans stop at 16 KiB). In `redacted_obj` a redacted key is
    renamed, a redacted blob re-encoded, and an embedded document written back as JSON
    from its own redaction."""
    inner: dict[str, Any] = {}
    # One walk tells the keys, the blobs and whether a string may hold a document; only
    # an answer with such a string is expanded (and its expansion walked again).
    keys, blobs, embedded = _keys_blobs_and_documents(obj)
    expanded = obj
    if embedded:
        expanded = _expand(obj, inner, 0)
        if expanded is not obj:
            keys, blobs = _keys_and_blobs(expanded)
    result = g.scan_json(expanded, "response", channel=channel)
    if result.blocked:
        return result
    extra = _scan_keys_and_blobs(g, keys, blobs, channel) if keys or blobs else None
    renamed: dict[str, str] = {}
    values: dict[str, str] = {}
    if extra is not None and extra.redacted_obj is not None:
        new_keys, new_texts = extra.redacted_obj[: len(keys)], extra.redacted_obj[len(keys) :]
        renamed = {old: new for old, new in zip(keys, new_keys, strict=True) if new != old}
        for (blob, old), new in zip(blobs.items(), new_texts, strict=True):
            if new != old:
                values[blob] = base64.b64encode(new.encode("utf-8", "surrogateescape")).decode()
    redacted = result.redacted_obj
    if renamed or values:
        redacted = _rewrite(expanded, expanded if redacted is None else redacted, renamed, values)
    if redacted is not None and inner:
        redacted = _collapse(obj, redacted, inner)
    if extra is None or not (extra.findings or extra.errors):
        if redacted is result.redacted_obj:
            return result
        extra = ScanResult()
    return ScanResult(
        findings=result.findings + extra.findings,
        blocked=extra.blocked,
        redacted_text=None,
        risk=max(result.risk, extra.risk),
        redacted_obj=redacted,
        errors=result.errors + extra.errors,
    )


def _scan_keys_and_blobs(
    g: Guardrails, keys: list[str], blobs: dict[str, str], channel: Channel
) -> ScanResult:
    """`Guardrails.scan_json` of the keys and decoded blobs of a document; a key list
    found clean before (`_clean_keys`) is not scanned again."""
    memo: dict[Any, None] | None = None
    entry: tuple[str, tuple[str, ...]] | None = None
    if not blobs and g.deterministic("response"):
        entry = (channel, tuple(keys))
        memo = g.clean_memo(CLEAN_KEYS_MEMO)
        if entry in memo:
            return _CLEAN
    result = g.scan_json([*keys, *blobs.values()], "response", channel=channel)
    if (
        memo is not None
        and entry is not None
        and not (result.findings or result.errors or result.blocked)
        and result.redacted_obj is None
        and sum(map(len, keys)) <= _CLEAN_KEYS_MAX_CHARS
    ):
        if len(memo) >= _CLEAN_KEYS_MAX_ENTRIES:
            memo.clear()
        memo[entry] = None
    return result


_CLEAN = ScanResult()


def _expand(obj: Any, inner: dict[str, Any], depth: int) -> Any:
    """``obj`` with each string that holds a JSON document replaced by that document
    (expanded in turn, two levels deep), recorded in ``inner``; ``obj`` itself when none
    does. A container is copied only when one of its values changed."""
    if isinstance(obj, str):
        if depth >= _NESTED_DEPTH:
            return obj
        parsed = inner[obj] if obj in inner else _embedded_json(obj)
        if parsed is NOT_PARSED:
            return obj
        inner[obj] = parsed
        return _expand(parsed, inner, depth + 1)
    if isinstance(obj, dict):
        items: dict[Any, Any] | None = None
        for k, v in obj.items():
            if type(v) in _LEAF_TYPES:
                continue
            new = _expand(v, inner, depth)
            if new is not v:
                if items is None:
                    items = dict(obj.items())
                items[k] = new
        return obj if items is None else items
    if isinstance(obj, list):
        out: list[Any] | None = None
        for i, v in enumerate(obj):
            if type(v) in _LEAF_TYPES:
                continue
            new = _expand(v, inner, depth)
            if new is not v:
                if out is None:
                    out = list(obj)
                out[i] = new
        return obj if out is None else out
    return obj


_LEAF_TYPES = frozenset({int, float, bool, type(None)})


def _collapse(obj: Any, redacted: Any, inner: dict[str, Any]) -> Any:
    """``redacted`` (a redaction of ``obj`` expanded) with each embedded document written
    back into its string: unchanged, the original string; changed, as JSON."""
    if isinstance(obj, str):
        if obj not in inner or isinstance(redacted, str):
            return redacted
        new = _collapse(inner[obj], redacted, inner)
        return obj if new == inner[obj] else dump_answer_json(new).decode()
    if isinstance(obj, dict) and isinstance(redacted, dict):
        return {
            rk: _collapse(v, rv, inner)
            for (_, v), (rk, rv) in zip(obj.items(), redacted.items(), strict=True)
        }
    if isinstance(obj, list) and isinstance(redacted, list):
        return [_collapse(v, rv, inner) for v, rv in zip(obj, redacted, strict=True)]
    return redacted


def _keys_and_blobs(obj: Any) -> tuple[list[str], dict[str, str]]:
    """The distinct object keys of a document long enough to hold a finding, in order,
    and its ``blob`` strings that decode to UTF-8 text (blob -> text)."""
    keys: dict[str, None] = {}
    blobs: dict[str, str] = {}
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                if isinstance(k, str) and len(k) >= MIN_FINDING_CHARS:
                    keys[k] = None  # insertion order: the first time a key is seen
                tv = type(v)
                if tv in _LEAF_TYPES:
                    continue
                if tv is dict or tv is list or isinstance(v, (dict, list)):
                    stack.append(v)
                elif k == "blob" and isinstance(v, str) and v not in blobs:
                    text = _blob_text(v)
                    if text is not None:
                        blobs[v] = text
        elif isinstance(item, list):
            stack.extend([v for v in item if isinstance(v, dict | list)])
    return list(keys), blobs


_SPACES = frozenset(
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""What `str.lstrip` strips (every character for which `str.isspace` is true)."""
_DOCUMENT_STARTS = frozenset("{[")


def _keys_blobs_and_documents(obj: Any) -> tuple[list[str], dict[str, str], bool]:
    """`_keys_and_blobs` of `obj` and whether one of its strings may hold a JSON document
    (one `_expand` would replace: long enough, ``{`` or ``[`` after leading white space),
    in one walk: the everyday answer holds none and is then neither expanded nor walked
    again."""
    keys: dict[str, None] = {}
    blobs: dict[str, str] = {}
    embedded = isinstance(obj, str) and _may_hold_document(obj)
    stack = [obj]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict or (kind is not list and isinstance(item, dict)):
            for k, v in item.items():
                if (type(k) is str or isinstance(k, str)) and len(k) >= MIN_FINDING_CHARS:
                    keys[k] = None  # insertion order: the first time a key is seen
                tv = type(v)
                if tv in _LEAF_TYPES:
                    continue
                if tv is dict or tv is list or isinstance(v, (dict, list)):
                    stack.append(v)
                elif tv is str or isinstance(v, str):
                    if not embedded and len(v) >= MIN_FINDING_CHARS:
                        first = v[:1]
                        if first in _DOCUMENT_STARTS or (
                            first in _SPACES and _may_hold_document(v)
                        ):
                            embedded = True
                    if k == "blob" and v not in blobs:
                        text = _blob_text(v)
                        if text is not None:
                            blobs[v] = text
        elif kind is list or isinstance(item, list):
            for v in item:
                tv = type(v)
                if tv in _LEAF_TYPES:
                    continue
                if tv is dict or tv is list or isinstance(v, (dict, list)):
                    stack.append(v)
                elif (
                    not embedded
                    and (tv is str or isinstance(v, str))
                    and len(v) >= MIN_FINDING_CHARS
                ):
                    first = v[:1]
                    if first in _DOCUMENT_STARTS or (first in _SPACES and _may_hold_document(v)):
                        embedded = True
    return list(keys), blobs, embedded


def _may_hold_document(text: str) -> bool:
    return len(text) >= MIN_FINDING_CHARS and text.lstrip()[:1] in ("{", "[")


def _embedded_json(text: str) -> Any:
    """The document a string holds (``NOT_PARSED``: none, or a bare scalar)."""
    if len(text) < MIN_FINDING_CHARS or text.lstrip()[:1] not in ("{", "["):
        return NOT_PARSED
    return parse_answer_json(text)


def _blob_text(blob: str) -> str | None:
    """A base64 blob's UTF-8 text (``None``: not base64, binary, or too short to hold a
    finding)."""
    if len(blob) < 8:
        return None
    try:
        return base64.b64decode(blob, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def _rewrite(obj: Any, redacted: Any, renamed: dict[str, str], values: dict[str, str]) -> Any:
    """``redacted`` (``obj`` as `scan_json` redacted it, same shape) with keys renamed and
    the strings of ``obj`` found in ``values`` replaced: a blob or an embedded document
    is written back whole from its own reading, not from a redaction of its raw text."""
    if isinstance(obj, str):
        return values.get(obj, redacted)
    if isinstance(obj, dict):
        return {
            renamed.get(k, k): _rewrite(v, r, renamed, values)
            for (k, v), r in zip(obj.items(), redacted.values(), strict=True)
        }
    if isinstance(obj, list):
        return [_rewrite(v, r, renamed, values) for v, r in zip(obj, redacted, strict=True)]
    return redacted


def scan_json_lines(
    g: Guardrails, text: str, channel: Channel = "document"
) -> tuple[ScanResult, str | None] | None:
    """NDJSON / JSON lines (Ollama's answers, log exports) read as their clients read
    them: each line parsed on its own, its strings and keys scanned, a line that does not
    parse scanned as text. ``None`` when ``text`` is not JSON lines (one line, or no line
    that parses). Returns the result and the redacted text (``None``: unchanged)."""
    if text.lstrip()[:1] not in ("{", "[") or "\n" not in text.strip():
        return None
    lines = text.splitlines(keepends=True)
    subjects: list[Any] = []
    parsed_any = False
    for line in lines:
        obj = parse_answer_json(line) if line.strip() else NOT_PARSED
        parsed_any = parsed_any or obj is not NOT_PARSED
        subjects.append(line if obj is NOT_PARSED else obj)
    if not parsed_any:
        return None
    result = scan_answer_json(g, subjects, channel)
    if result.redacted_obj is None:
        return result, None
    out = []
    for line, old, new in zip(lines, subjects, result.redacted_obj, strict=True):
        if new == old:
            out.append(line)
        elif isinstance(old, str):
            out.append(new)
        else:
            out.append(dump_answer_json(new).decode() + line[len(line.rstrip("\r\n")) :])
    return result, "".join(out)


def writable_codec(detected: str) -> str:
    """The codec to write a redacted answer in when JSON detection read it (a BOM read
    is written without one, which detection still reads the same way)."""
    return {"utf-8-sig": "utf-8", "utf-16": "utf-16-le", "utf-32": "utf-32-le"}.get(
        detected, codecs.lookup(detected).name
    )
