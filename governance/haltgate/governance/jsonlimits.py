"""How deep a JSON document haltgate accepts, checked once where a body is parsed.

orjson parses up to 1024 levels but serialises only 254, and the stages after the parse
serialise parts of the body again (the tool-call fingerprint, the OPA input, the audit
payload), each adding a few levels of its own. A body deeper than :data:`MAX_JSON_DEPTH`
is refused at the parse with ``json_too_deep`` (audited like every refusal) instead of
failing somewhere later as an internal error.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_JSON_DEPTH", "deeper_than"]

MAX_JSON_DEPTH = 128
"""Deepest nesting of arrays and objects accepted in a request body (levels)."""


def deeper_than(obj: Any, limit: int = MAX_JSON_DEPTH, raw: bytes | None = None) -> bool:
    """True when ``obj`` (parsed JSON) nests containers more than ``limit`` levels deep.

    With ``raw`` (the bytes it was parsed from), a document with fewer brackets than
    ``limit`` is cleared without walking it: the common case costs two ``bytes.count``.
    Iterative, so a deep document cannot exhaust the Python stack.
    """
    if raw is not None and raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        depth += 1
        if depth > limit:
            return True
        stack.extend((child, depth) for child in children if isinstance(child, dict | list))
    return False
