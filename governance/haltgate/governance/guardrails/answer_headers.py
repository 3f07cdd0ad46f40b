"""The response guardrails on an answer's header values.

An HTTP tool or a fetched page can carry an instruction or a leaked key in a header
(``X-Note``, ``Warning``, ``Link``, a ``Content-Disposition`` filename, ``Location``,
``Set-Cookie``), and agents and tool wrappers that hand headers to the model read them. The
values of the headers the agent receives are scanned as ``document`` text by every detector
of the response direction, with the policy's actions: ``block`` refuses the answer,
``redact`` replaces the span in the header value.

Not scanned, to keep the cost small: the well-known structural headers whose values are not
text (:data:`STRUCTURAL`: dates, lengths, codings, cache and CORS directives...), framing
headers (never relayed) and haltgate's own (``X-Haltgate-*``). The values scanned are
bounded (:data:`MAX_SCANNED_CHARS`); more than that cannot be scanned (the caller follows
``failMode``).

In ``Set-Cookie`` the cookie's name is not read as a secret's name (``csrftoken=<random>``
is the session a client keeps, not a leak): its value and attributes are scanned as text,
so a known key format or an instruction in them is found.

Findings carry ``path`` ``header:<name>`` (lower-case): never a JSON pointer, so a body
finding and a header finding cannot be confused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from haltgate.governance.guardrails.base import Channel, Finding
from haltgate.governance.guardrails.engine import Guardrails

__all__ = ["MAX_SCANNED_CHARS", "STRUCTURAL", "HeaderScan", "HeadersTooLarge", "scan_headers"]

STRUCTURAL: Final = frozenset(
    {
        # framing and transport (most are never relayed; listed so none is ever read)
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "trailer",
        "upgrade",
        "date",
        # codings, types, ranges, validators
        "content-type",
        "content-encoding",
        "content-language",
        "content-range",
        "accept-ranges",
        "etag",
        "last-modified",
        "expires",
        "age",
        "vary",
        "cache-control",
        "pragma",
        # security and CORS directives
        "strict-transport-security",
        "x-content-type-options",
        "x-frame-options",
        "x-xss-protection",
        "referrer-policy",
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
        "access-control-max-age",
        "cross-origin-opener-policy",
        "cross-origin-embedder-policy",
        "cross-origin-resource-policy",
        "timing-allow-origin",
        "alt-svc",
        # ids of the answer and its trace (fresh in every answer: scanning them costs ~50 us)
        "x-request-id",
        "request-id",
        "x-amzn-requestid",
        "x-amz-request-id",
        "x-amz-cf-id",
        "cf-ray",
        "traceparent",
        "tracestate",
        # an MCP session's opaque id: the client echoes it back (redacting it ends the session)
        "mcp-session-id",
    }
)
"""Headers whose values are not scanned: well-known structure, not text."""

_PLAIN_VALUE: Final = re.compile(
    r"-?[0-9]{1,8}(?:\.[0-9]{1,6})?(?:ms|s)?"  # counts, sizes, durations (rate limits)
    r"|(?:[0-9]{1,4}h)?(?:[0-9]{1,4}m)?[0-9]{1,4}(?:\.[0-9]{1,6})?m?s"  # 6m0s, 1.5s, 20ms
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9:]{4,5})?",
    re.ASCII,
)
"""Values that are only a number, a duration or a timestamp (rate-limit headers change in
every answer): nothing a detector finds can be in them (at most 8 digits: never a phone
or card number)."""

MAX_SCANNED_CHARS: Final = 16 * 1024
"""Characters of header values scanned at most per answer (past it: :class:`HeadersTooLarge`)."""


_MEMO = "answer_headers"
"""`Guardrails.clean_memo` of the values a policy's response guardrails found clean
before (``Server``, ``Link``, cookie attributes repeat answer after answer: a scan costs
~40-250 us, this lookup under 1 us). One set per compiled policy (its detectors and
thresholds decided), emptied when full."""
_CLEAN_MAX_ENTRIES = 4096
_CLEAN_MAX_CHARS = 512


class HeadersTooLarge(ValueError):
    """More header text to scan than :data:`MAX_SCANNED_CHARS`."""


@dataclass(frozen=True, slots=True)
class HeaderScan:
    """What the header scan found, and the values to relay in place of the originals."""

    findings: tuple[Finding, ...] = ()
    blocked: bool = False
    code: str | None = None
    risk: float = 0.0
    errors: tuple[str, ...] = ()
    redacted: dict[int, str] | None = None
    """Redacted values by their position in the headers given (``None``: none changed)."""


def scan_headers(
    guardrails: Guardrails, headers: Iterable[tuple[str, str]], *, channel: Channel = "document"
) -> HeaderScan:
    """Scan the values of ``headers`` (name, value pairs as relayed, in order) with the
    detectors of the response direction. Raises :class:`HeadersTooLarge` past the bound."""
    clean = guardrails.clean_memo(_MEMO)
    if not isinstance(headers, list | tuple):
        headers = list(headers)  # read twice when the shortcut does not settle it
    if _known_clean(headers, clean):
        return HeaderScan()  # the common case: the same headers, answer after answer
    positions: list[int] = []
    names: list[str] = []
    texts: list[str] = []
    prefixes: list[str] = []
    size = 0
    for i, (name, value) in enumerate(headers):
        lower = name.lower()
        if (
            lower in STRUCTURAL
            or lower.startswith("x-haltgate-")
            or not value.strip()
            or _PLAIN_VALUE.fullmatch(value)
        ):
            continue
        size += len(value)
        if size > MAX_SCANNED_CHARS:
            raise HeadersTooLarge(
                f"more than {MAX_SCANNED_CHARS} characters of response header values to scan"
            )
        cut = _cookie_name_end(value) if lower == "set-cookie" else 0
        positions.append(i)
        names.append(lower)
        texts.append(" " * cut + value[cut:] if cut else value)
        prefixes.append(value[:cut])
    unknown = [k for k, text in enumerate(texts) if text not in clean]
    if not unknown:
        return HeaderScan()  # the common case: the same headers, answer after answer
    if len(unknown) < len(texts):  # only what was not found clean before is scanned
        positions = [positions[k] for k in unknown]
        names = [names[k] for k in unknown]
        texts = [texts[k] for k in unknown]
        prefixes = [prefixes[k] for k in unknown]
    result = guardrails.scan_json(texts, "response", channel=channel)
    if not result.findings and not result.errors:
        if len(clean) + len(texts) > _CLEAN_MAX_ENTRIES:
            clean.clear()
        clean.update((t, None) for t in texts if len(t) <= _CLEAN_MAX_CHARS)
        return HeaderScan()
    findings = tuple(_located(f, names) for f in result.findings)
    redacted: dict[int, str] | None = None
    red = result.redacted_obj
    if isinstance(red, list) and not result.blocked:
        redacted = {}
        for k, (old, new) in enumerate(zip(texts, red, strict=True)):
            if new != old:
                redacted[positions[k]] = prefixes[k] + new[len(prefixes[k]) :]
        redacted = redacted or None
    return HeaderScan(
        findings=findings,
        blocked=result.blocked,
        code=result.code,
        risk=result.risk,
        errors=result.errors,
        redacted=redacted,
    )


_READ_NAMES: dict[str, tuple[str | None]] = {}
"""Header name -> (its lower case when its value is read, None when not: structural,
haltgate's own): answers repeat their names, one look-up instead of lower-casing and
testing each."""
_READ_NAMES_MAX = 1024


def _read_name(name: str) -> str | None:
    lower = name.lower()
    read = None if lower in STRUCTURAL or lower.startswith("x-haltgate-") else lower
    if len(_READ_NAMES) >= _READ_NAMES_MAX:
        _READ_NAMES.clear()
    _READ_NAMES[name] = (read,)
    return read


def _known_clean(headers: Sequence[tuple[str, str]], clean: dict[object, None]) -> bool:
    """True when the full scan would find nothing to scan that was not found clean before:
    every value read is in `clean` (values found clean are never blank or plain) or is
    blank or plain, and what is in `clean` stays within the bound (counted generously: a
    value over it, or a ``Set-Cookie``, whose text is not its value, leaves it to the full
    scan, which raises or scans as before)."""
    size = 0
    for name, value in headers:
        known = _READ_NAMES.get(name)  # one look-up: another thread may empty it
        lower = _read_name(name) if known is None else known[0]
        if lower is None:
            continue
        if lower == "set-cookie":
            return False
        if value in clean:
            size += len(value)
            continue
        if not value.strip() or _PLAIN_VALUE.fullmatch(value):
            continue
        return False
    return size <= MAX_SCANNED_CHARS


def _located(f: Finding, names: Sequence[str]) -> Finding:
    """The finding with its header's name as location (``/3`` -> ``header:x-note``)."""
    index = int((f.path or "/0")[1:].partition("/")[0])
    return replace(f, path=f"header:{names[index]}")


def _cookie_name_end(value: str) -> int:
    """Length of ``name=`` at the start of a Set-Cookie value (0: none)."""
    eq = value.find("=")
    semi = value.find(";")
    if eq < 0 or (0 <= semi < eq):
        return 0
    return eq + 1
