"""JSON with one reading: duplicate keys and keys that collide case-insensitively refused.

Parsers disagree on ``{"model":"a","model":"b"}`` (orjson and Python keep the last value,
many others the first) and on ``{"model":"a","Model":"b"}`` (Go's encoding/json matches
struct fields case-insensitively). A body haltgate governs must mean one thing to every
parser, so such bodies are refused with a typed 400 (``ambiguous_json``) naming the key.

Cost: the body is parsed once with orjson as before. Then one regular-expression pass over
the raw bytes lists the keys (a JSON string followed by ``:`` is always a key, and the
strings of a valid document are found in order). Exact duplicates are possible only when a
key text occurs twice; only then are the parsed objects' keys counted and compared with the
raw count (orjson collapses duplicates, so fewer parsed keys means a duplicate). Case
collisions are possible only when some key is not plain lower-case ASCII (or carries an
escape); only then does the exact, slower pass run (``json.loads`` with an
``object_pairs_hook``), which also names the offending key. ``bench/strict_json.py``
measures it.

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

__all__ = ["CODE_AMBIGUOUS_JSON", "check_one_reading", "loads", "require_exact_fields"]

CODE_AMBIGUOUS_JSON: Final = "ambiguous_json"

# A JSON string (unrolled loop: fast on long strings), then optionally the ':' of a key.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"([ \t\r\n]*:)?')


class _Ambiguous(ValueError):
    pass


def loads(body: bytes) -> Any:
    """Parse ``body`` (orjson) and refuse it when it reads two ways.

    Raises ``orjson.JSONDecodeError`` for invalid JSON (the caller names it) and
    :class:`BadRequestError` ``ambiguous_json`` for duplicate or colliding keys.
    """
    obj = orjson.loads(body)
    if isinstance(obj, dict | list):
        check_one_reading(body, obj)
    return obj


def check_one_reading(body: bytes, obj: Any) -> None:
    """Refuse ``body`` (whose orjson parse is ``obj``) if any object in it has duplicate
    keys or keys equal up to case (Unicode case folding, as Go's matching)."""
    keys: list[bytes] = []
    for m in _STRING.finditer(body):
        if m.group(1) is not None:
            keys.append(m.group(0))
    if len(keys) < 2:
        return
    blob = b"\x00".join(keys)
    if b"\\" in blob or not blob.isascii() or blob != blob.lower():
        _exact_pass(body)  # escapes, non-ASCII or upper case: compare as parsers would
        return
    if len(set(keys)) == len(keys):
        return  # every key text is unique in the document: no object can repeat one
    if _count_keys(obj) != len(keys):
        _exact_pass(body)  # orjson dropped a duplicate: find and name it
        raise BadRequestError("JSON body has a duplicate key", code=CODE_AMBIGUOUS_JSON)


def _count_keys(obj: Any) -> int:
    total = 0
    stack = [obj]
    pop = stack.pop
    push = stack.append
    while stack:
        node = pop()
        if type(node) is dict:
            total += len(node)
            for value in node.values():
                t = type(value)
                if t is dict or t is list:
                    push(value)
        else:
            for value in node:
                t = type(value)
                if t is dict or t is list:
                    push(value)
    return total


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len(pairs) > 1:
        seen: dict[str, str] = {}
        for key, _ in pairs:
            folded = key.casefold()
            other = seen.get(folded)
            if other is not None:
                if other == key:
                    raise _Ambiguous(f"JSON body repeats the key {key[:64]!r} in one object")
                raise _Ambiguous(f"JSON keys {other[:64]!r} and {key[:64]!r} are the same key "
                                 "to case-insensitive parsers")
            seen[folded] = key
    return dict(pairs)


def _exact_pass(body: bytes) -> None:
    try:
        json.loads(body, object_pairs_hook=_pairs)
    except _Ambiguous as e:
        raise BadRequestError(str(e), code=CODE_AMBIGUOUS_JSON) from None


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
                    f"spell it {name!r}", code=CODE_AMBIGUOUS_JSON)
