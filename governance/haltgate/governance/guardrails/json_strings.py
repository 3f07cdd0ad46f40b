"""The string values of a parsed JSON document, for scanning: walked in document order with
their JSON pointers and whether the agent's owner wrote them, joined into one text (with
the way back to each string), and the document rebuilt with some strings replaced.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple


def _escape_pointer(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


_MAX_JSON_DEPTH = 256


MIN_FINDING_CHARS = 6
"""Shorter strings cannot hold any finding ("a@b.co" is the shortest); JSON is full of them."""
JOIN = _JOIN = "\n\n"
"""Separator of the strings of a JSON document scanned as one text."""


class JoinedStrings:
    """Strings of a document joined into one text, with the way back to each string (its
    table is built on the first `locate`: a clean text never needs it)."""

    __slots__ = ("_ids", "_lengths", "_parts", "_starts", "text")

    def __init__(self, text: str, parts: Sequence[tuple[int, str]]) -> None:
        self.text = text
        self._parts = parts
        self._starts: list[int] | None = None
        self._ids: list[int] = []
        self._lengths: list[int] = []

    @classmethod
    def build(cls, parts: Sequence[tuple[int, str]]) -> JoinedStrings:
        return cls(_JOIN.join([v for _, v in parts]), parts)

    def _index(self) -> list[int]:
        starts: list[int] = []
        pos = 0
        for i, v in self._parts:
            starts.append(pos)
            self._ids.append(i)
            self._lengths.append(len(v))
            pos += len(v) + len(_JOIN)
        self._starts = starts
        return starts

    def locate(self, start: int, end: int) -> tuple[int, int, int]:
        """(string id, start, end) in that string; a span running over the end of its
        string is cut there (an attack split over two fields is still reported)."""
        starts = self._starts if self._starts is not None else self._index()
        k = max(0, bisect.bisect_right(starts, start) - 1)
        base = starts[k]
        n = self._lengths[k]
        return self._ids[k], min(start - base, n), min(max(end - base, start - base), n)


_AGENT_ROLES = frozenset({"system", "developer"})
_AGENT_FIELDS = frozenset({"system", "instructions"})
_TOOL_ROLES = frozenset({"tool", "function", "ipython"})
"""Chat roles of messages that carry a tool's result (OpenAI, Llama)."""
_TOOL_TYPE_ENDINGS = ("tool_result", "_call_output")
"""Content block / item types of tool results: Anthropic ``tool_result``,
``mcp_tool_result``, ``web_search_tool_result``...; OpenAI Responses
``function_call_output``, ``computer_call_output``..."""
_DOCUMENT_TYPES = frozenset({"document", "search_result"})
"""Anthropic content blocks that hold a retrieved document."""
_TOOL_KEYS = frozenset({"functionResponse", "function_response"})
"""Gemini parts whose value is a tool's result."""


_LABEL_KEYS = frozenset({"type", "role"})
_LABEL = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_ID_KEYS = frozenset({"id", "tool_use_id", "tool_call_id", "call_id"})
_ID = re.compile(r"(?=[A-Za-z_-]*[0-9])[A-Za-z0-9_-]{1,64}")


_INSTRUCTION_WORDS = re.compile(
    r"(?i)ignor|disregard|forget|overrid|bypass|instruct|prompt|reveal|jailbreak|pretend|"
    r"secret|password|exfiltrat|rule|polic|restrict|safety|filter|admin|sudo|unlock"
)
"""Words that may turn a label into an order (``"type": "ignore_all_instructions"``)."""


_label_memo: dict[tuple[str, str], bool] = {}
"""`is_label` of (key, value) pairs seen before (roles, types and ids repeat in every
document); at most `_LABEL_MEMO_MAX` pairs, emptied when full."""
_LABEL_MEMO_MAX = 4096
_LABEL_MAX_CHARS = 64
"""No label is longer (`_LABEL` and `_ID` match at most 64 characters)."""


def is_label(key: str, value: str) -> bool:
    """A value that only labels the structure: a lower-case ``type`` / ``role`` name
    (``tool_result``, ``assistant``) or an id with a digit (``call_1``, ``toolu_01A0``),
    with no word that could make it an order. Such values hold no sentence, and read next
    to a tool result they dilute it."""
    if len(value) > _LABEL_MAX_CHARS:
        return False
    if len(key) > _LABEL_MAX_CHARS:  # never a label key: not worth a memo entry
        return _is_label(key, value)
    pair = (key, value)
    known = _label_memo.get(pair)
    if known is None:
        known = _is_label(key, value)
        if len(_label_memo) >= _LABEL_MEMO_MAX:
            _label_memo.clear()
        _label_memo[pair] = known
    return known


def _is_label(key: str, value: str) -> bool:
    if key in _LABEL_KEYS:
        shaped = _LABEL.fullmatch(value) is not None
    else:
        shaped = key in _ID_KEYS and _ID.fullmatch(value) is not None
    return shaped and _INSTRUCTION_WORDS.search(value) is None


class JsonString(NamedTuple):
    """One string value of a document and what the walk knows of where it sits."""

    pointer: str
    value: str
    trusted: bool
    """Written by the agent's owner (a system/developer message, top-level instructions)."""
    tool_result: bool
    """Inside a tool result or retrieved document carried by the request (a message with
    role tool/function, a ``tool_result`` / ``function_call_output`` block, ...)."""
    label: bool = False
    """A structure label (`is_label`): skipped by detectors that read sentences."""


def _is_tool_result(obj: dict[str, Any]) -> bool:
    role = obj.get("role")
    if isinstance(role, str) and role in _TOOL_ROLES:
        return True
    kind = obj.get("type")
    return isinstance(kind, str) and (kind.endswith(_TOOL_TYPE_ENDINGS) or kind in _DOCUMENT_TYPES)


def iter_strings(
    obj: Any, pointer: str, depth: int = 0, *, trusted: bool, tool_result: bool = False
) -> Iterator[JsonString]:
    """Every string value, depth-first, in document order, with its JSON pointer, whether
    the agent's owner wrote it, whether it is (inside) a tool result, and whether it is a
    structure label."""
    out: list[JsonString] = []
    _collect(obj, pointer, depth, trusted, tool_result, out, 0, _kind(obj))
    yield from out


def collect_strings(obj: Any, *, min_chars: int = 0) -> list[JsonString]:
    """`iter_strings` of a whole document (``trusted=False``) as a list, without the
    strings shorter than `min_chars` (their pointers are never built: the scan's walk)."""
    out: list[JsonString] = []
    _collect(obj, "", 0, False, False, out, min_chars, _kind(obj))
    return out


_LABEL_OR_ID_KEYS = _LABEL_KEYS | _ID_KEYS


_LEAF_TYPES = frozenset({int, float, bool, type(None)})


def _kind(v: Any) -> type | None:
    """``str``, ``dict`` or ``list`` for what the walk reads (subclasses and tuples too),
    ``None`` for what holds no text. Exact types are told apart by identity first: JSON
    parsers make nothing else, and an `isinstance` chain per value is most of a walk."""
    t = type(v)
    if t is str or t is dict or t is list:
        return t
    if t in _LEAF_TYPES:
        return None
    if isinstance(v, str):
        return str
    if isinstance(v, dict):
        return dict
    if isinstance(v, list | tuple):
        return list
    return None


def _collect(
    obj: Any,
    pointer: str,
    depth: int,
    trusted: bool,
    tool_result: bool,
    out: list[JsonString],
    min_chars: int,
    kind: type | None,
) -> None:
    """The walk of `iter_strings`, appending to `out` (a list, not nested generators:
    several times cheaper on the small documents of every call). A value deeper than
    `_MAX_JSON_DEPTH` raises, whatever its type, as the per-value check did. `kind` is
    `_kind(obj)`, which the caller has already told."""
    if depth > _MAX_JSON_DEPTH:
        raise ValueError("JSON document nested too deeply")
    if kind is str:
        if len(obj) >= min_chars:
            out.append(JsonString(pointer, obj, trusted, tool_result))
        return
    if kind is None or not obj:
        return
    if depth >= _MAX_JSON_DEPTH:  # its values lie deeper than the bound
        raise ValueError("JSON document nested too deeply")
    if kind is list:
        for i, v in enumerate(obj):
            vk: type | None = type(v)
            if vk is not str and vk is not dict and vk is not list:
                vk = None if vk in _LEAF_TYPES else _kind(v)
            if vk is str:
                if len(v) >= min_chars:
                    out.append(JsonString(f"{pointer}/{i}", v, trusted, tool_result))
            elif vk is not None:
                _collect(v, f"{pointer}/{i}", depth + 1, trusted, tool_result, out, min_chars, vk)
        return
    role = obj.get("role")
    # Attacker-shaped JSON: a role may be any value, and a list is not hashable.
    # (`_is_tool_result` written out, exact types first: a call per object is most of
    # the walk of a small document.)
    role_str = role is not None and (type(role) is str or isinstance(role, str))
    inner = trusted or (role_str and role in _AGENT_ROLES)
    inner_tool = tool_result or (role_str and role in _TOOL_ROLES)
    if not inner_tool:
        kind_ = obj.get("type")
        inner_tool = (
            kind_ is not None
            and (type(kind_) is str or isinstance(kind_, str))
            and (kind_.endswith(_TOOL_TYPE_ENDINGS) or kind_ in _DOCUMENT_TYPES)
        )
    for k, v in obj.items():
        vk = type(v)
        if vk is not str and vk is not dict and vk is not list:
            vk = None if vk in _LEAF_TYPES else _kind(v)
        if vk is None or (vk is str and len(v) < min_chars):
            continue  # a number, true/false/null, or too short to hold a finding
        key_trusted = (inner or (depth == 0 and k in _AGENT_FIELDS)) and not inner_tool
        key_tool = inner_tool or k in _TOOL_KEYS
        name = k if type(k) is str else str(k)
        child = f"{pointer}/{_escape_pointer(name)}" if "~" in name or "/" in name else (
            f"{pointer}/{name}"
        )  # fmt: skip
        if vk is str:
            label = k in _LABEL_OR_ID_KEYS and isinstance(k, str) and is_label(k, v)
            out.append(JsonString(child, v, key_trusted, key_tool, label))
        else:
            _collect(v, child, depth + 1, key_trusted, key_tool, out, min_chars, vk)


def rebuild(obj: Any, pointer: str, replaced: dict[str, str]) -> Any:
    if isinstance(obj, str):
        return replaced.get(pointer, obj)
    if isinstance(obj, dict):
        return {
            k: rebuild(v, f"{pointer}/{_escape_pointer(str(k))}", replaced) for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [rebuild(v, f"{pointer}/{i}", replaced) for i, v in enumerate(obj)]
    return obj
