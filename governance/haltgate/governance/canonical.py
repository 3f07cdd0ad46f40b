"""One reading of a request's path and headers: the form haltgate decides on and forwards.

A proxy that decides on its own reading of a request and forwards bytes the upstream reads
differently can be walked around (``/api/%61dmin`` passes a ``/api/admin/**`` deny rule,
then the upstream decodes it). So the path is brought to one canonical form before any
stage looks at it, that form is what is forwarded, and whatever would still read two ways
is refused with a typed 400:

- percent-encoded unreserved characters (RFC 3986: letters, digits, ``-._~``) are decoded,
  other escapes are kept with upper-case hex digits, non-ASCII characters are encoded;
- refused (``ambiguous_path``): an encoded ``/`` (``%2F``), ``\\`` (``%5C``), NUL or other
  control character, an encoded ``%`` that forms an escape once decoded (double encoding),
  a malformed escape, a raw ``\\``, an empty segment (``//``), ``;`` parameters (unless the
  policy allows them: rules then match the path without them);
- refused (``invalid_path``): dot segments (``.``, ``..``, also encoded).

A trailing ``/`` stays (every parser reads it the same way); path rules treat it (and case)
leniently where that can only refuse more, see :mod:`haltgate.governance.tools`.

Headers and parameters that change what the upstream does with a request are refused
(``meaning_override``): haltgate decides on the method, host and path it sees. Those are
method overrides (``X-HTTP-Method-Override`` and the like, ``_method``), URL rewrites
(``X-Original-URL``, ``X-Rewrite-URL``) and the forwarding headers that frameworks and
gateways honour to rebuild the request's URL (``X-Forwarded-Prefix``, ``-Path``, ``-Uri``,
``-Host``, ``-Proto``, ``Forwarded``...: Spring's ForwardedHeaderFilter, Werkzeug's
ProxyFix, Django, Traefik and Envoy route or match security rules on what they name).
Refused, not stripped: a stripped header silently sends another request than the agent
made, and the agent could not tell; a refusal names the header and the agent can send the
request as what it is. An agent's HTTP client never needs them (they are a proxy's to set).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl

from haltgate.governance.canonical_query import loose_name
from haltgate.governance.errors import BadRequestError

__all__ = [
    "CODE_AMBIGUOUS_PATH",
    "CODE_INVALID_PATH",
    "CODE_MEANING_OVERRIDE",
    "MEANING_HEADERS",
    "CanonicalPath",
    "canonical_path",
    "check_meaning_overrides",
    "encode_non_ascii",
]

CODE_AMBIGUOUS_PATH: Final = "ambiguous_path"
CODE_INVALID_PATH: Final = "invalid_path"
CODE_MEANING_OVERRIDE: Final = "meaning_override"

_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%(?:[0-9A-Fa-f]{2})?")
_DOUBLE = re.compile(r"%25[0-9A-Fa-f]{2}")
_REFUSED_ESCAPES: Final = {"2F": "an encoded '/' (%2F)", "5C": "an encoded '\\' (%5C)"}

MEANING_HEADERS: Final = (
    # the method
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    # the path
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-prefix",
    "x-forwarded-path",
    "x-forwarded-uri",
    "x-envoy-original-path",
    # the host, scheme and port (virtual hosts, tenant routing, scheme-based rules)
    "x-forwarded-host",
    "x-forwarded-server",
    "x-host",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-port",
    "x-forwarded-ssl",
    "x-url-scheme",
    "front-end-https",
    "forwarded",
)
"""Request headers some servers and frameworks honour to change the method, the path, the
host or the scheme of the request they execute."""


@dataclass(frozen=True, slots=True)
class CanonicalPath:
    """A path read one way: ``forward`` is sent upstream, ``match`` is what rules see."""

    forward: str
    match: str


def _refuse(what: str) -> BadRequestError:
    return BadRequestError(
        f"path has {what}: it reads differently upstream", code=CODE_AMBIGUOUS_PATH
    )


def _escape(m: re.Match[str]) -> str:
    text = m.group(0)
    if len(text) != 3:
        raise _refuse("a malformed percent escape")
    hx = text[1:].upper()
    char = chr(int(hx, 16))
    if char in _UNRESERVED:
        return char
    refused = _REFUSED_ESCAPES.get(hx)
    if refused is not None:
        raise _refuse(refused)
    if char < " " or char == "\x7f":
        raise _refuse(f"an encoded control character (%{hx})")
    return "%" + hx


def encode_non_ascii(text: str) -> str:
    """``text`` with every non-ASCII character percent-encoded as UTF-8."""
    if text.isascii():
        return text
    return "".join(
        c if c.isascii() else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in text
    )


def canonical_path(raw: str, *, parameters: bool = False) -> CanonicalPath:
    """The canonical form of a raw (still encoded) request path without its query.

    ``parameters``: allow ``;`` parameters in segments (``spec.limits.pathParameters``);
    the match path then has them removed. Raises :class:`BadRequestError`
    (``ambiguous_path`` or ``invalid_path``) for what has no single reading.
    """
    if not raw.startswith("/"):
        raise _refuse("no leading '/'")
    if (
        "%" not in raw
        and ";" not in raw
        and "//" not in raw
        and "/." not in raw
        and "\\" not in raw
        and "#" not in raw
        and raw.isascii()
    ):
        return CanonicalPath(raw, raw)  # the common case: nothing to decode or refuse
    if "#" in raw:
        # A request-target never carries a fragment (RFC 9112 3.2); an HTTP client drops it
        # when it forwards, so the rules would judge a path the upstream never sees.
        raise _refuse("a '#' (a request-target has no fragment)")
    if "\\" in raw:
        raise _refuse("a '\\' (some servers read it as '/')")
    path = raw if raw.isascii() else encode_non_ascii(raw)
    if "%" in path:
        path = _ESCAPE.sub(_escape, path)
        double = _DOUBLE.search(path)
        if double is not None:  # judged after decoding: %25a%41 becomes %25aA
            raise _refuse(f"a double-encoded escape ({double.group(0)})")
    segments = path.split("/")
    last = len(segments) - 1
    matched: list[str] = []
    for i, segment in enumerate(segments[1:], start=1):
        bare = segment
        if ";" in segment:
            if not parameters:
                raise _refuse("';' parameters")
            bare = segment.partition(";")[0]
        if bare in (".", ".."):
            raise BadRequestError("path contains dot segments", code=CODE_INVALID_PATH)
        if not bare and i != last:
            raise _refuse("an empty segment ('//')")
        matched.append(bare)
    match = "/" + "/".join(matched)
    return CanonicalPath(path, match)


_FORM = "application/x-www-form-urlencoded"


def check_meaning_overrides(
    headers: Mapping[str, str], query: str, content_type: str, body: bytes
) -> None:
    """Refuse a request that asks the upstream to read it as another method or path.

    ``headers`` is case-insensitive (aiohttp's ``CIMultiDictProxy``). Checked: the
    :data:`MEANING_HEADERS`, a ``_method`` query parameter and a ``_method`` field of a
    form-encoded body (Rails, Laravel, Symfony and Express middleware honour them).
    """
    for name in MEANING_HEADERS:
        if name in headers:
            raise BadRequestError(
                f"header {name!r} would make the upstream read another method, path or host; "
                "send the request as what it is",
                code=CODE_MEANING_OVERRIDE,
            )
    if "method" in query.lower():
        _refuse_method_param(query, "query parameter")
    if body and content_type.startswith(_FORM) and b"method" in body.lower():
        _refuse_method_param(body.decode("latin-1"), "form field")


def _refuse_method_param(encoded: str, where: str) -> None:
    for key, _ in parse_qsl(encoded, keep_blank_values=True):
        if loose_name(key) == "_method":
            raise BadRequestError(
                f"{where} '_method' would make the upstream read another method",
                code=CODE_MEANING_OVERRIDE,
            )
