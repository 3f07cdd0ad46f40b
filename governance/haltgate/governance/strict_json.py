"""JSON with one reading: duplicate keys and keys that collide case-insensitively refused.

Parsers disagree on ``{"model":"a","model":"b"}`` (orjson and Python keep the last value,
many others the first) and on ``{"model":"a","Model":"b"}`` (Go's encoding/json matches
struct fields case-insensitively). A body haltgate governs must mean one thing to every
parser, so such bodies are refused with a typed 400 (``ambiguous_json``) naming the key.

Cost (``bench/strict_json.py``): the body is parsed once with orjson, as before. Exact
duplicates: orjson keeps one value per key, so the parse re-serialised (``orjson.dumps``,
cheap) has fewer ``:`` than the raw body exactly when a key was repeated (``:`` is never
escaped by orjson, so a raw body without ``\\u003a`` escapes keeps its count); a body that
already is orjson's compact form (many clients send that) is checked by one comparison.
Only when the counts differ does the exact pass run (``json.loads`` with an
``object_pairs_hook``), which names the key. Case collisions: a walk over the parsed
objects, folding only the objects that have a key other than plain lower-case ASCII. The
walk covers every depth (``nested=True``, MCP: tool arguments are read at any depth by
argument constraints) or the top-level object only (``nested=False``, LLM bodies: the
policy reads top-level fields, and guardrails scan every value whatever its key, so a
nested ``"Content"`` next to ``"content"`` hides nothing from them; exact duplicates, which
would hide a value, are refused at every depth in both cases).

:func:`require_exact_fields` closes the remaining gap: a lone ``"Model"`` collides with
nothing, yet a Go upstream reads it as ``model``; fields the policy reads must be spelled
exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Final

import orjson

from haltgate.governance.errors import BadRequestError

__all__ = [
    "CODE_AMBIGUOUS_JSON",
    "check_one_reading",
    "loads",
    "plain_keys",
    "repeats_a_key",
    "require_exact_fields",
]

CODE_AMBIGUOUS_JSON: Final = "ambiguous_json"

_ESCAPED_COLON = re.compile(rb"\\u003[aA]")


class _Ambiguous(ValueError):
    pass


def loads(body: bytes, *, nested: bool = True) -> Any:
    """Parse ``body`` (orjson) and refuse it when it reads two ways.

    Raises ``orjson.JSONDecodeError`` for invalid JSON (the caller names it) and
    :class:`BadRequestError` ``ambiguous_json`` for duplicate or colliding keys.
    ``nested``: look for case collisions at every depth, else in the top-level object.
    """
    obj = orjson.loads(body)
    if isinstance(obj, dict | list):
        check_one_reading(body, obj, nested=nested)
    return obj


def check_one_reading(body: bytes, obj: Any, *, nested: bool = True) -> None:
    """Refuse ``body`` (whose orjson parse is ``obj``) if an object in it repeats a key, or
    has keys equal up to case (Unicode case folding, as Go's matching) at the depths
    ``nested`` selects."""
    try:
        canon = orjson.dumps(obj)
    except orjson.JSONEncodeError:
        canon = b""
    if canon != body and (
        body.count(b":") != canon.count(b":")
        or (b"\\" in body and _ESCAPED_COLON.search(body) is not None)
    ):
        _exact_pass(body)
    _check_case(obj, nested)


def repeats_a_key(text: str | bytes, obj: Any) -> bool:
    """Whether an object in the JSON ``text`` (whose parse is ``obj``) repeats a key: the
    answer-side test (answers are not refused for it; the sidecar writes them back with
    one value per key, the value it scanned). Same cost as :func:`check_one_reading`: one
    ``orjson.dumps`` and a ``:`` count; the exact pass only when the counts differ. A text
    the exact pass cannot read (a BOM, a lone surrogate) counts as repeating: writing it
    back is harmless, leaving a repeated key is not."""
    body = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    try:
        canon = orjson.dumps(obj)
    except orjson.JSONEncodeError:
        canon = b""
    if canon == body or (
        body.count(b":") == canon.count(b":")
        and not (b"\\" in body and _ESCAPED_COLON.search(body) is not None)
    ):
        return False
    try:
        json.loads(body, object_pairs_hook=_pairs)
    except _Ambiguous:
        return True
    except (ValueError, RecursionError):
        return True
    return False


def plain_keys(keys: Iterable[str]) -> bool:
    """Every key lower-case ASCII, so no two fold together (``False`` may be a false alarm,
    e.g. keys without letters: the caller then folds them one by one). One join, two
    C-level scans."""
    joined = "".join(keys)
    return joined.islower() and joined.isascii()


def _check_case(obj: Any, nested: bool) -> None:
    if not nested:
        if type(obj) is dict and len(obj) > 1 and not plain_keys(obj):
            _fold(obj)
        return
    stack = [obj]
    pop = stack.pop
    push = stack.append
    while stack:
        node = pop()
        if type(node) is dict:
            if len(node) > 1 and not plain_keys(node):
                _fold(node)
            values: Iterable[Any] = node.values()
        else:
            values = node
        for value in values:
            t = type(value)
            if t is dict or t is list:
                push(value)


def _fold(node: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for key in node:
        folded = key.casefold()
        other = seen.get(folded)
        if other is not None:
            raise BadRequestError(
                f"JSON keys {other[:64]!r} and {key[:64]!r} are the same key to "
                "case-insensitive parsers",
                code=CODE_AMBIGUOUS_JSON,
            )
        seen[folded] = key


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Ambiguous(f"JSON body repeats the key {key[:64]!r} in one object")
            seen.add(key)
    return result


def _exact_pass(body: bytes) -> None:
    try:
        json.loads(body, object_pairs_hook=_pairs)
    except _Ambiguous as e:
        raise BadRequestError(str(e), code=CODE_AMBIGUOUS_JSON) from None
    except RecursionError:
        raise BadRequestError(
            "JSON body is nested too deeply to be checked", code=CODE_AMBIGUOUS_JSON
        ) from None


def require_exact_fields(obj: Any, fields: Iterable[str], where: str) -> None:
    """Refuse a key of the object ``obj`` that equals one of ``fields`` up to case but is
    spelled otherwise (``"Model"`` for ``model``): a case-insensitive upstream would read
    the field the policy did not."""
    if not isinstance(obj, dict):
        return
    wanted = fields if isinstance(fields, frozenset) else frozenset(fields)
    for key in obj:
        if key in wanted or (key.isascii() and key.islower()):
            continue
        folded = key.casefold()
        for name in wanted:
            if folded == name:
                raise BadRequestError(
                    f"{where}: key {key[:64]!r} is {name!r} to case-insensitive parsers; "
                    f"spell it {name!r}",
                    code=CODE_AMBIGUOUS_JSON,
                )
