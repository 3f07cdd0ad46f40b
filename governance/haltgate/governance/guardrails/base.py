"""Shared types of the guardrail detectors: what a detector reports and what a scan returns.

A detector only *finds* things (`Candidate`); the engine decides what a candidate means under
the policy (threshold, allowlist, action, monitor-only) and turns it into a `Finding`.
Neither a candidate nor a finding keeps the matched text outside the process: `Finding.to_dict`
gives offsets, never the value, so findings can be audited and logged as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

ScanDirection = Literal["request", "response"]
Verdict = Literal["block", "redact", "log"]
Channel = Literal["request", "document"]
"""Where a text comes from, which sets the thresholds a channel-aware stage uses:
``request`` is what the agent (or the model on its behalf) writes: prompts, tool-call
arguments, the model's answers; ``document`` is what the agent reads from elsewhere: tool
results inside a request's messages, MCP tool results, HTTP tool answers, fetched pages."""
CHANNELS: tuple[Channel, ...] = ("request", "document")


def default_channel(direction: ScanDirection) -> Channel:
    """The channel of a text whose caller did not say: what goes out is request text, what
    comes back (a tool's or a page's answer) is a document."""
    return "request" if direction == "request" else "document"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One raw hit of a detector, before the policy is applied.

    `start`/`end` are offsets into the text given to the detector (Python string indices,
    half-open). `entity` names the kind of thing found (``email``, ``github_token``,
    ``ignore_instructions``); `score` is in [0, 1]. `via` names the de-obfuscation that exposed
    the hit (``base64``, ``rot13``, ``confusables``...), None when it was found as written.
    """

    entity: str
    start: int
    end: int
    score: float
    via: str | None = None
    advisory: bool = False
    """Evidence too weak to act on: reported with action ``log`` (its risk still counts),
    whatever the policy's action. Used for the model stage's uncertain band."""
    encoding: str | None = None
    """The decoding chain of the span the hit was found in (``base64``, ``hex``,
    ``base64+rot13``, ...; see `decode`), None when it was found in the text as written.
    `start`/`end` then cover the whole encoded run in the original text."""


@runtime_checkable
class Detector(Protocol):
    """A content detector. Implementations must be pure and thread-safe after construction."""

    name: str
    """Stable detector id: ``prompt_injection``, ``pii`` or ``secrets``."""

    def detect(self, text: str, *, channel: Channel = "request") -> list[Candidate]:
        """Return every candidate found in `text` (unsorted, possibly overlapping).

        `channel` says where the text comes from (`Channel`); a detector with per-channel
        thresholds uses it, others may ignore it."""
        ...


@dataclass(frozen=True, slots=True)
class Finding:
    """A candidate that counts under the policy."""

    detector: str
    type: str
    score: float
    start: int
    end: int
    action: Verdict
    """What the policy does with it: block the call, redact the span, or only log."""
    risk: float
    """Risk added to the risk budget for this finding."""
    via: str | None = None
    path: str | None = None
    """JSON pointer (RFC 6901) of the string value it was found in, for `scan_json`."""
    monitor_only: bool = False
    """True when the policy asked to record only: the action was not carried out."""
    encoding: str | None = None
    """Decoding chain of the span it was found in (`Candidate.encoding`)."""
    channel: Channel | None = None
    """The channel the text was judged as (`Channel`); set by the engine on every finding."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for audit records, metrics and the CLI (never the matched text)."""
        out: dict[str, Any] = {
            "detector": self.detector,
            "type": self.type,
            "score": round(self.score, 4),
            "start": self.start,
            "end": self.end,
            "action": self.action,
        }
        if self.via is not None:
            out["via"] = self.via
        if self.encoding is not None:
            out["encoding"] = self.encoding
        if self.path is not None:
            out["path"] = self.path
        if self.channel is not None:
            out["channel"] = self.channel
        if self.monitor_only:
            out["monitor_only"] = True
        return out


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Outcome of one scan.

    `blocked` is True when a finding's action is ``block`` (and not monitor-only) or when a
    detector failed under ``failMode: closed``. `redacted_text` is the text with redacted
    spans replaced by placeholders, None when nothing was redacted; for `scan_json` the
    redacted document is in `redacted_obj` (None when nothing changed).
    """

    findings: tuple[Finding, ...] = ()
    blocked: bool = False
    redacted_text: str | None = None
    risk: float = 0.0
    redacted_obj: Any = None
    errors: tuple[str, ...] = field(default=())
    """Detectors that raised (their names, with the exception type), e.g. ``pii:ValueError``."""

    @property
    def code(self) -> str | None:
        """Stable snake_case code of the blocking reason, None when not blocked."""
        if not self.blocked:
            return None
        for f in self.findings:
            if f.action == "block" and not f.monitor_only:
                return f"guardrail_{f.detector}"
        return "guardrail_error"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no matched text)."""
        return {
            "verdict": "block" if self.blocked else "allow",
            "risk": round(self.risk, 4),
            "findings": [f.to_dict() for f in self.findings],
            **({"errors": list(self.errors)} if self.errors else {}),
        }
