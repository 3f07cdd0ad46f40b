"""One reading of a request's query string: what rules read is what the upstream receives.

The query used to be forwarded as sent and read by no rule, so ``/items/1?action=delete``
passed a policy that would refuse the same value in the path or a tool argument; and the
parsers upstream disagree on the same bytes (``+`` is a space to form decoders and a plus
to others, ``;`` separated pairs in older Python and Rails and makes Go drop the pair,
a repeated key is the first value to one framework, the last to another and a list to a
third, ``Action`` is ``action`` to ASP.NET, ``action[]`` and ``action.x`` are ``action``
to PHP). So the query is read once, here, before any stage looks at it:

- split on ``&`` (empty pairs dropped), each pair on its first ``=``; ``+`` is a space;
  percent escapes decoded once;
- refused (``ambiguous_query``): a raw ``;`` (a separator to some parsers, data to
  others; send ``%3B``), a ``#`` (a request-target has no fragment), a malformed escape
  (``%zz``, a lone ``%``: dropped by some parsers, kept by others), NUL anywhere (C
  strings end there), a name that is not UTF-8 or holds a control character;
- for a parameter a rule reads (``spec.tools`` argument constraints ``$.query.<name>`` of
  ``kind: http`` rules): refused when it is repeated, when another name could be read as
  it by some framework (case, surrounding spaces, ``name[...]``, ``.`` or space for
  ``_``), when its value is not UTF-8 or still holds an escape after decoding (a server
  that decodes twice would read another value);
- the forwarded query is rebuilt from the decoded pairs with one encoder: unreserved
  characters and ``!$'()*,/:@?`` literal, everything else percent-encoded with upper-case
  hex digits (a space as ``%20``, never ``+``). Every parser reads those bytes as the
  pairs the rules read.

Rules see the pairs as arguments ``{"query": {name: value}}`` (HTTP tool rules, see
:mod:`haltgate.governance.tools`) and OPA as ``request.query`` (``{name: [values]}``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, unquote_to_bytes

from haltgate.governance.errors import BadRequestError

__all__ = [
    "CODE_AMBIGUOUS_QUERY",
    "EMPTY_QUERY",
    "QUERY_SAFE",
    "CanonicalQuery",
    "canonical_query",
    "loose_name",
]

CODE_AMBIGUOUS_QUERY: Final = "ambiguous_query"

QUERY_SAFE: Final = "!$'()*,/:@?-._~"
"""Characters a canonical query keeps literal besides letters and digits: none of them is
structure to any query parser (``&``, ``=``, ``+``, ``;``, ``#`` and ``%`` are)."""

_HEX: Final = frozenset("0123456789abcdefABCDEF")
_MALFORMED_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CANONICAL_ALREADY = re.compile(r"[A-Za-z0-9!$'()*,/:@?._~=&-]*\Z")
"""A query made only of characters the encoder keeps and the separators: nothing to decode
or re-encode (most queries: ``api-version=2024-02-01``)."""


@dataclass(frozen=True, slots=True)
class CanonicalQuery:
    """A query read one way: ``forward`` is sent upstream (without ``?``), ``pairs`` is
    what rules read (decoded name and value, in order; a value that is not UTF-8 is
    decoded with replacement characters and never read by a rule)."""

    forward: str
    pairs: tuple[tuple[str, str], ...]

    def arguments(self) -> dict[str, Any]:
        """The tool-rule view: ``{"query": {name: value}}`` (names a rule reads are never
        repeated, see :func:`canonical_query`; of another repeated name the last value)."""
        return {"query": dict(self.pairs)}

    def params(self) -> dict[str, list[str]]:
        """The OPA view: every value of every name, in order."""
        out: dict[str, list[str]] = {}
        for name, value in self.pairs:
            out.setdefault(name, []).append(value)
        return out


EMPTY_QUERY: Final = CanonicalQuery("", ())


def _refuse(what: str) -> BadRequestError:
    return BadRequestError(
        f"query string has {what}: it reads differently upstream", code=CODE_AMBIGUOUS_QUERY
    )


def loose_name(name: str) -> str:
    """How the most lenient common framework reads a parameter name: without case or
    surrounding spaces, up to a ``[`` (PHP and Rails arrays), ``.`` and spaces as ``_``
    (PHP)."""
    return name.strip().partition("[")[0].replace(".", "_").replace(" ", "_").casefold()


def _decode(component: str) -> bytes:
    """``+`` as a space, percent escapes decoded once (a malformed one is refused)."""
    text = component.replace("+", " ")
    if "%" not in text:
        return text.encode("utf-8")
    bad = _MALFORMED_ESCAPE.search(text)
    if bad is not None:
        raise _refuse(f"a malformed percent escape ({text[bad.start() : bad.start() + 3]!r})")
    return unquote_to_bytes(text)


def _encode(raw: bytes) -> str:
    return quote(raw, safe=QUERY_SAFE)


def _has_escape(text: str) -> bool:
    at = text.find("%")
    while at != -1:
        hx = text[at + 1 : at + 3]
        if len(hx) == 2 and _HEX.issuperset(hx):
            return True
        at = text.find("%", at + 1)
    return False


def canonical_query(raw: str, read: Iterable[str] = ()) -> CanonicalQuery:
    """The canonical form of a raw (still encoded) query string, without its ``?``.

    ``read``: the parameter names rules read (see the module docstring for what is
    refused about them). Raises :class:`BadRequestError` ``ambiguous_query``.
    """
    if not raw:
        return EMPTY_QUERY
    if "#" in raw:
        raise _refuse("a '#' (a request-target has no fragment)")
    if ";" in raw:
        raise _refuse("a ';' (a pair separator to some parsers; send it as %3B)")
    if _CANONICAL_ALREADY.match(raw) and "&&" not in raw and raw[0] != "&" and raw[-1] != "&":
        plain = tuple((n, v) for n, _, v in (p.partition("=") for p in raw.split("&")))
        names = frozenset(read)
        if names:
            _check_read_names(list(plain), [v.encode() for _, v in plain], names)
        return CanonicalQuery(raw, plain)
    pairs: list[tuple[str, str]] = []
    encoded: list[str] = []
    raw_values: list[bytes] = []
    for piece in raw.split("&"):
        if not piece:
            continue
        name_part, sep, value_part = piece.partition("=")
        if _CANONICAL_ALREADY.match(piece):  # nothing to decode or re-encode
            pairs.append((name_part, value_part))
            raw_values.append(value_part.encode())
            encoded.append(piece)
            continue
        name_bytes = _decode(name_part)
        value_bytes = _decode(value_part)
        if b"\x00" in name_bytes or b"\x00" in value_bytes:
            raise _refuse("an encoded NUL (%00)")
        try:
            name = name_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise _refuse("a parameter name that is not UTF-8") from None
        if any(c < " " or c == "\x7f" for c in name):
            raise _refuse(f"a control character in the parameter name {name[:64]!r}")
        pairs.append((name, value_bytes.decode("utf-8", "replace")))
        raw_values.append(value_bytes)
        encoded.append(_encode(name_bytes) + ("=" + _encode(value_bytes) if sep else ""))
    names = frozenset(read)
    if names:
        _check_read_names(pairs, raw_values, names)
    return CanonicalQuery("&".join(encoded), tuple(pairs))


def _check_read_names(
    pairs: list[tuple[str, str]], raw_values: list[bytes], names: frozenset[str]
) -> None:
    loose = {loose_name(n): n for n in names}
    seen: set[str] = set()
    for (name, value), value_bytes in zip(pairs, raw_values, strict=True):
        read = loose.get(loose_name(name))
        if read is None:
            continue
        if name != read:
            raise _refuse(
                f"a parameter {name[:64]!r} that some servers read as {read!r}, which the "
                "policy reads; spell it exactly"
            )
        if name in seen:
            raise _refuse(f"the parameter {name[:64]!r} twice, which the policy reads")
        seen.add(name)
        try:
            value_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise _refuse(f"a value of {name[:64]!r} that is not UTF-8") from None
        if _has_escape(value):
            raise _refuse(
                f"a percent escape left in {name[:64]!r} after decoding (double encoding), "
                "which the policy reads"
            )
