"""The secrets guardrail on what a request carries besides its body: URL and headers.

A key in the path (``/v1/files/AKIA...``), in the query (``?token=ghp_...``) or in an
``X-Note`` header reaches the upstream as surely as one in the body. In the request
direction the secrets detector (only it: URLs and headers are full of numbers and
addresses that are not personal data in the sense of a prompt) scans the percent-decoded
path and query and every header value except the agent's own credential headers
(:data:`~haltgate.governance.audit.redact.CREDENTIAL_HEADERS`: a key in ``Authorization``
is what the upstream needs). ``block`` refuses the call; ``redact`` replaces the secret in
the forwarded URL or header by its placeholder.

Findings carry ``path`` ``/url/path``, ``/url/query`` or ``/header/<name>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

from haltgate.governance.audit.redact import CREDENTIAL_HEADERS
from haltgate.governance.canonical_query import QUERY_SAFE
from haltgate.governance.guardrails.base import Finding
from haltgate.governance.guardrails.engine import Guardrails

__all__ = ["MetaScan", "scan_request_meta"]

DETECTOR = "secrets"

_NOT_SCANNED = CREDENTIAL_HEADERS | {
    "host",
    "content-length",
    "content-type",
    "connection",
    "accept",
    "accept-encoding",
    "transfer-encoding",
}
_MEMO = "request_meta"
"""`Guardrails.clean_memo` of the values a policy's secrets detector found clean before
(SDK headers and paths repeat on every call: scanning them costs ~100-200 us, this lookup
under 1 us). One set per compiled policy (its thresholds and allowlists decided), emptied
when full."""
_CLEAN_MAX_ENTRIES = 4096
_CLEAN_MAX_CHARS = 512

_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_QUERY_SAFE = QUERY_SAFE  # the canonical query's encoder: never a raw ';' or '+'


@dataclass(frozen=True, slots=True)
class MetaScan:
    """Outcome of the URL and header scan."""

    findings: tuple[Finding, ...] = ()
    blocked: bool = False
    code: str | None = None
    risk: float = 0.0
    errors: tuple[str, ...] = ()
    path: str | None = None
    """Path to forward in place of the original (``None``: unchanged)."""
    query: str | None = None
    """Query (without ``?``) to forward in place of the original (``None``: unchanged)."""
    headers: dict[str, list[str]] | None = None
    """Redacted values by lower-case header name; those names are forwarded with these
    values only (``None``: no header changed)."""


def scan_request_meta(
    guardrails: Guardrails, path: str, query: str, headers: Iterable[tuple[str, str]]
) -> MetaScan:
    """Scan ``path``, ``query`` (raw, as on the wire) and ``headers`` with the secrets
    detector of the request direction (an empty result when it is not enabled there)."""
    if not guardrails.runs(DETECTOR, "request"):
        return MetaScan()
    header_values: dict[str, list[str]] = {}
    for name, value in headers:
        known = _SCANNED_NAMES.get(name)  # one look-up: another thread may empty it
        lower = _scanned_name(name) if known is None else known[0]
        if lower is not None:
            header_values.setdefault(lower, []).append(value)
    clean = guardrails.clean_memo(_MEMO)
    if not query and _all_clean(unquote(path), header_values, clean):
        return MetaScan()  # the common case, told before the document is built
    # The query is scanned parameter by parameter (name and value decoded apart), so a
    # redaction re-encodes only what it changed and ``%26`` inside a value stays a value.
    params = [p.partition("=") for p in query.split("&")] if query else []
    doc: dict[str, Any] = {
        "url": {
            "path": unquote(path),
            "query": [[unquote_plus(n), unquote_plus(v)] for n, _, v in params],
        },
        "header": header_values,
    }
    values = [
        doc["url"]["path"],
        *(x for pair in doc["url"]["query"] for x in pair),
        *(v for vs in header_values.values() for v in vs),
    ]
    if all(v in clean for v in values):
        return MetaScan()  # the common case: the same SDK headers and paths, call after call
    result = guardrails.scan_json(doc, "request", only=(DETECTOR,))
    if not result.findings and not result.errors:
        if len(clean) + len(values) > _CLEAN_MAX_ENTRIES:
            clean.clear()
        clean.update((v, None) for v in values if len(v) <= _CLEAN_MAX_CHARS)
        return MetaScan()
    new_path = new_query = None
    new_headers: dict[str, list[str]] | None = None
    red = result.redacted_obj
    if red is not None and not result.blocked:
        if red["url"]["path"] != doc["url"]["path"]:
            new_path = quote(red["url"]["path"], safe=_PATH_SAFE)
        if red["url"]["query"] != doc["url"]["query"]:
            new_query = "&".join(
                _param(raw, old, new)
                for raw, old, new in zip(
                    params, doc["url"]["query"], red["url"]["query"], strict=True
                )
            )
        changed = {k: v for k, v in red["header"].items() if v != header_values[k]}
        new_headers = changed or None
    return MetaScan(
        findings=result.findings,
        blocked=result.blocked,
        code=result.code,
        risk=result.risk,
        errors=result.errors,
        path=new_path,
        query=new_query,
        headers=new_headers,
    )


_SCANNED_NAMES: dict[str, tuple[str | None]] = {}
"""Header name -> (its lower case when its value is scanned, None when not): an SDK sends
the same names call after call, one look-up instead of lower-casing and testing each."""
_SCANNED_NAMES_MAX = 1024


def _scanned_name(name: str) -> str | None:
    lower = name.lower()
    scanned = None if lower in _NOT_SCANNED or lower.startswith("x-haltgate-") else lower
    if len(_SCANNED_NAMES) >= _SCANNED_NAMES_MAX:
        _SCANNED_NAMES.clear()
    _SCANNED_NAMES[name] = (scanned,)
    return scanned


def _all_clean(path: str, header_values: dict[str, list[str]], clean: dict[Any, None]) -> bool:
    """Whether the path and every header value were found clean before (the values of a
    request without a query, as `scan_request_meta` collects them)."""
    if path not in clean:
        return False
    for values in header_values.values():
        for v in values:
            if v not in clean:
                return False
    return True


def _param(raw: tuple[str, str, str], old: list[str], new: list[str]) -> str:
    """One query parameter: as it came unless redaction changed its name or value."""
    name, sep, value = raw
    if new[0] != old[0]:
        name = quote(new[0], safe=_QUERY_SAFE)
    if new[1] != old[1]:
        value = quote(new[1], safe=_QUERY_SAFE)
    return name + sep + value
