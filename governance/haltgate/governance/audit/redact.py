"""What reaches the audit trail is scrubbed first: redacted, NUL-free and bounded.

The audit spool is append-only and hash-chained: a value written there cannot be cleaned
later without breaking the chain. So every value an agent or an upstream controls (URL,
tool and model names, error messages, guardrail finding paths, the captured payload) goes
through an :class:`AuditScrubber` before a record is built:

- **redaction**: with ``spec.audit.payload`` ``redacted`` (and ``none``, which keeps no
  payload but still the URL and messages) the PII detector (every entity) and the secrets
  detector run on each of those values, *whatever the guardrail settings are*: a policy
  with only prompt injection on, or PII scanned in the response direction only, still
  stores no raw e-mail address or key. Object keys and long numbers are scanned too.
  ``full`` keeps values as they are (the operator asked for it).
- **writable**: NUL characters (PostgreSQL text cannot hold them; a record with one used to
  be refused, so the refusal went unaudited) are escaped, nesting deeper than
  :data:`MAX_PAYLOAD_DEPTH` is cut with a marker (orjson cannot serialise past 254), and a
  value the detectors cannot scan is replaced by a marker rather than stored raw.

Credential headers (``Authorization``, API-key headers) are never part of a record: no
record field holds request headers (see :data:`CREDENTIAL_HEADERS`, shared with the
request-direction header scan).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus

from haltgate.governance.guardrails.base import Detector
from haltgate.governance.guardrails.pii import PIIDetector
from haltgate.governance.guardrails.redaction import Redactor, apply_redactions
from haltgate.governance.guardrails.secrets import SecretsDetector

__all__ = [
    "CREDENTIAL_HEADERS",
    "MAX_PAYLOAD_DEPTH",
    "REDACTION_FAILED",
    "AuditScrubber",
    "escape_nul",
    "is_clean",
    "state_key",
]

CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "openai-api-key",
        "anthropic-api-key",
        "x-auth-token",
        "cookie",
        "set-cookie",
    }
)
"""Headers that carry the agent's own credentials to its upstream: never stored, and not
scanned by the secrets guardrail (a key in ``Authorization`` is the point of it)."""

MAX_PAYLOAD_DEPTH = 64
"""Containers nested deeper than this in a captured payload are replaced by a marker."""

MAX_TEXT_CHARS = 256 * 1024
"""A single value longer than this (characters) is stored as a marker, not scanned."""

MAX_PAYLOAD_SCAN_CHARS = 64 * 1024
"""Characters of one payload's strings scanned (~1-2 ms of detector time per 1,000 on this
project's machines, on the event loop): strings past this budget are stored as
:data:`OVER_BUDGET`, never raw. Set so one call cannot stall the sidecar for long."""
OVER_BUDGET = "<TRUNCATED: over the redaction budget>"

MAX_NAME_CHARS = 256
"""Longest tool or model name stored; longer ones are cut and marked."""
NAME_CUT = "<TRUNCATED>"

REDACTION_FAILED = "<REDACTION_FAILED>"
"""Stored in place of a value the detectors could not scan (never the raw value)."""
TOO_DEEP = "<TRUNCATED: nested too deeply>"
TOO_LONG = "<TRUNCATED: value too long>"

_clean: dict[str, None] = {}
"""Short values found clean before (URLs, tool and model names repeat call after call):
scanning a URL costs ~60 us, looking it up here well under 1 us. Only clean values are
kept (a redacted one is numbered per call), bounded by emptying it when full."""
_CLEAN_MAX_ENTRIES = 4096
_CLEAN_MAX_CHARS = 512

_clean_long: dict[bytes, None] = {}
"""Longer values found clean before, by a 128-bit BLAKE2b digest of their text (an agent
resends its conversation with every call: each message would be scanned again, ~1 ms per
10 KB; hashing it takes microseconds). Only whether the value is clean is kept (the scan
budget of a payload is charged as before); bounded like ``_clean``."""

_MIN_FINDING_CHARS = 6
"""Shorter strings cannot hold a finding ("a@b.co" is the shortest): never scanned."""

_MIN_NUMBER = 10**6
"""Integers with at least this many digits (7) are scanned as text: card numbers, phone
numbers and national ids are sometimes sent as JSON numbers."""


_THRESHOLD = 0.5
"""Score at or above which a candidate is redacted (the policy detectors' default)."""


@functools.cache
def _detectors() -> tuple[Detector, ...]:
    """PII (every entity) and secrets, shared by every scrubber (immutable, thread-safe)."""
    return (PIIDetector(), SecretsDetector())


def escape_nul(value: str) -> str:
    """``value`` with NUL written as the six characters ``\\u0000``."""
    return value.replace("\x00", "\\u0000") if "\x00" in value else value


class AuditScrubber:
    """Scrubs the untrusted values of one call's records (one placeholder numbering per call,
    so the same value gets the same placeholder in the URL, the message and the payload).

    ``redact``: run the detectors (payload modes ``none`` and ``redacted``); without it only
    the writability rules apply (``full``).
    """

    __slots__ = ("_budget", "_cache", "_payload", "_redactor", "redact")

    def __init__(self, *, redact: bool) -> None:
        self.redact = redact
        self._redactor: Redactor | None = None
        """Made on the first value to redact (most calls have none)."""
        self._cache: dict[str, str] = {}
        self._budget = MAX_PAYLOAD_SCAN_CHARS
        self._payload: tuple[Any, Any] | None = None
        """The last payload scrubbed and its copy (a call's intent and outcome records
        carry the same body: it is walked once)."""

    # ------------------------------------------------------------------ text fields

    def text(self, value: str) -> str:
        """A scrubbed string field (URL, tool, model, message)."""
        if not value:
            return value
        if not self.redact:
            return escape_nul(value)
        got = self._cache.get(value)
        if got is None:
            got = self._cache[value] = escape_nul(self._redact_text(value))
        return got

    def optional(self, value: str | None) -> str | None:
        """`text` for an optional field."""
        return None if value is None else self.text(value)

    def name(self, value: str | None) -> str | None:
        """A tool or model name: scrubbed and cut to :data:`MAX_NAME_CHARS` (they are
        indexed columns; the agent chooses them)."""
        if value is not None and len(value) > MAX_NAME_CHARS:
            value = value[:MAX_NAME_CHARS] + NAME_CUT
        return self.optional(value)

    def target(self, value: str) -> str:
        """A ``METHOD URL`` target: also scanned percent-decoded (``%40`` is an ``@``)."""
        out = self.text(value)
        if not self.redact or ("%" not in out and "+" not in out):
            return out
        decoded = unquote_plus(out)
        again = self.text(decoded)
        # The decoded form is stored only when decoding exposed something to redact.
        return again if again != decoded else out

    def _redact_text(self, value: str) -> str:
        if len(value) < _MIN_FINDING_CHARS:
            return value
        if len(value) > MAX_TEXT_CHARS:
            return TOO_LONG
        short = len(value) <= _CLEAN_MAX_CHARS
        digest = b""
        if short:
            if value in _clean:
                return value
        else:
            digest = _digest(value)
            if digest in _clean_long:
                return value
        try:
            spans = _spans(value)
        except Exception:  # a detector failure must not store the raw value
            return REDACTION_FAILED
        if spans:
            redactor = self._redactor
            if redactor is None:
                redactor = self._redactor = Redactor()
            return apply_redactions(value, spans, redactor)
        if short:
            if len(_clean) >= _CLEAN_MAX_ENTRIES:
                _clean.clear()
            _clean[value] = None
        else:
            if len(_clean_long) >= _CLEAN_MAX_ENTRIES:
                _clean_long.clear()
            _clean_long[digest] = None
        return value

    # ------------------------------------------------------------------ findings

    def findings(self, findings: Iterable[Mapping[str, Any]]) -> tuple[Mapping[str, Any], ...]:
        """Guardrail findings with their JSON pointers scrubbed (a key can be a secret)."""
        out: list[Mapping[str, Any]] = []
        for f in findings:
            path = f.get("path")
            if isinstance(path, str) and path:
                scrubbed = self.text(path)
                if scrubbed != path:
                    f = {**f, "path": scrubbed}
            out.append(f)
        return tuple(out)

    def strings_of(self, mapping: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """``mapping`` with its string values scrubbed (numbers kept as they are: token
        counts are not phone numbers). For ``usage``, whose model name is the upstream's."""
        if not mapping:
            return mapping
        changed = {
            k: self.text(v) for k, v in mapping.items() if isinstance(v, str) and self.text(v) != v
        }
        return {**mapping, **changed} if changed else mapping

    # ------------------------------------------------------------------ payload

    def payload(self, obj: Any) -> Any:
        """A scrubbed copy of a parsed JSON payload (the input is never modified, and is
        not modified later: the same object again gets the same copy). Scrubbing it twice
        would give an equal copy anyway: every string scanned once is in the cache, and
        one over the budget stays over it."""
        done = self._payload
        if done is not None and done[0] is obj:
            return done[1]
        out = self._value(obj, 0)
        self._payload = (obj, out)
        return out

    def _budgeted(self, value: str) -> str:
        """`text` within the payload's scan budget (repeated values cost nothing)."""
        if (
            not self.redact
            or len(value) < _MIN_FINDING_CHARS
            or value in self._cache
            or (len(value) <= _CLEAN_MAX_CHARS and value in _clean)
        ):
            return self.text(value)
        if len(value) > self._budget:
            self._budget = 0
            return OVER_BUDGET
        self._budget -= len(value)
        return self.text(value)

    def _value(self, obj: Any, depth: int) -> Any:
        if isinstance(obj, str):
            return self._budgeted(obj)
        if isinstance(obj, bool) or obj is None or isinstance(obj, float):
            return obj
        if isinstance(obj, int):
            if not -(2**63) <= obj < 2**64:
                return self._budgeted(str(obj))  # JSON cannot carry it as a number here
            if self.redact and abs(obj) >= _MIN_NUMBER:
                text = str(obj)
                scrubbed = self.text(text)
                return obj if scrubbed == text else scrubbed
            return obj
        if depth >= MAX_PAYLOAD_DEPTH:
            return TOO_DEEP
        if isinstance(obj, Mapping):
            out: dict[str, Any] = {}
            for k, v in obj.items():
                key = self._budgeted(str(k))
                while key in out:  # two keys redacted alike: keep both values
                    key += "~"
                out[key] = self._value(v, depth + 1)
            return out
        if isinstance(obj, list | tuple):
            return [self._value(v, depth + 1) for v in obj]
        return self._budgeted(str(obj))


def _digest(value: str) -> bytes:
    """The key of a long clean value in ``_clean_long`` (lone surrogates included)."""
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def is_clean(value: str) -> bool:
    """True when neither detector finds anything in ``value`` (a metric label, a log
    field); a value the detectors cannot scan is not clean. Cached like the scrubber."""
    if len(value) <= _CLEAN_MAX_CHARS and value in _clean:
        return True
    try:
        return AuditScrubber(redact=True).text(value) == value
    except Exception:
        return False


def state_key(value: str | None) -> str | None:
    """``value`` as a name the budget state may keep on disk (distinct tools and hosts, the
    model of a reservation): itself when clean, else a digest (still distinct, never the
    secret). NUL is never kept."""
    if value is None or (is_clean(value) and "\x00" not in value):
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _spans(text: str) -> list[tuple[int, int, str]]:
    """Spans to redact in ``text`` (PII and secrets); raises when a detector fails."""
    return [
        (c.start, c.end, c.entity)
        for d in _detectors()
        for c in d.detect(text)
        if c.score >= _THRESHOLD and not c.advisory
    ]
