"""Glob patterns compiled into one anchored regular expression: the matcher language of
tool, flow and MCP rules (``*`` within a separator-delimited segment, ``**`` across)."""

from __future__ import annotations

import re
from collections.abc import Iterable


def compile_glob(
    patterns: Iterable[str],
    *,
    separator: str | None = None,
    ignore_case: bool = False,
    trailing_separator: bool = False,
) -> re.Pattern[str] | None:
    """Compile glob patterns into one anchored regular expression (``None`` if none given).

    ``*`` matches any run of characters except ``separator`` (any run at all when
    ``separator`` is ``None``), ``**`` matches any run including the separator, ``?`` one
    character other than the separator. Everything else is literal.
    ``trailing_separator``: also match with one more ``separator`` at the end.
    """
    alternatives: list[str] = []
    for pattern in patterns:
        alternatives.append(_glob_to_regex(pattern, separator))
    if not alternatives:
        return None
    flags = re.IGNORECASE if ignore_case else 0
    tail = re.escape(separator) + "?" if trailing_separator and separator else ""
    return re.compile("(?:" + "|".join(alternatives) + ")" + tail + r"\Z", flags | re.DOTALL)


def _glob_to_regex(pattern: str, separator: str | None) -> str:
    one = "." if separator is None else f"[^{re.escape(separator)}]"
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                out.append(".*")
                i += 2
                continue
            out.append(f"{one}*")
        elif ch == "?":
            out.append(one)
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)
