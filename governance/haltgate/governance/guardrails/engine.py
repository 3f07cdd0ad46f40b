"""Applies the policy's ``spec.guardrails`` to text and JSON: which detectors run in which
direction, thresholds, allowlists, actions, monitor-only mode, fail mode, redaction.

The sidecar builds one `Guardrails` per policy (``Guardrails.from_spec(spec.guardrails)``) and
calls `scan` / `scan_json` per request and response body, and `stream` for streamed text.
Everything here is synchronous CPU work on the caller's thread; a `Guardrails` object is
immutable after construction and may be shared between concurrent requests.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from haltgate.governance import policy_base, policy_checks
from haltgate.governance.guardrails import injection, ngram, pii, secrets
from haltgate.governance.guardrails.base import (
    Candidate,
    Channel,
    Detector,
    Finding,
    ScanDirection,
    ScanResult,
    Verdict,
    default_channel,
)
from haltgate.governance.guardrails.clean_gate import CleanGate, gate_for
from haltgate.governance.guardrails.json_strings import (
    JOIN,
    MIN_FINDING_CHARS,
    JoinedStrings,
    collect_strings,
    rebuild,
)
from haltgate.governance.guardrails.redaction import Redactor, apply_redactions

if TYPE_CHECKING:
    from haltgate.governance.guardrails import stream_scanner

log = logging.getLogger(__name__)

MAX_SCAN_CHARS = 2 * 1024 * 1024
"""Texts longer than this (characters) are not scanned: a detector error under the fail mode."""


_CHANNEL_BLIND = frozenset({pii.NAME, secrets.NAME})
"""Detectors that find the same things in every channel: `scan_json` runs them once over
all strings of a document instead of once per channel (their findings still name it)."""


class TextTooLarge(ValueError):
    """A text is larger than `MAX_SCAN_CHARS`."""


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    """The policy for one detector, compiled."""

    detector: Detector
    directions: frozenset[str]
    action: Verdict
    threshold: float
    monitor_only: bool
    allowlist: tuple[re.Pattern[str], ...]
    risk: float

    @classmethod
    def from_spec(cls, detector: Detector, spec: policy_checks.Detector) -> DetectorSettings:
        """Compile one detector's policy block (allowlist regexes compiled here, once)."""
        if spec.direction == policy_base.Direction.BOTH:
            directions = frozenset({"request", "response"})
        else:
            directions = frozenset({spec.direction.value})
        action: Verdict = spec.action.value
        if action == "redact" and detector.name == injection.NAME:
            # An injection cannot be cut out of its text safely: refuse the text instead.
            action = "block"
        return cls(
            detector=detector,
            directions=directions,
            action=action,
            threshold=spec.threshold,
            monitor_only=spec.monitor_only,
            allowlist=tuple(re.compile(p) for p in spec.allowlist),
            risk=spec.risk,
        )


@dataclass(slots=True)
class _TextOutcome:
    findings: list[Finding] = field(default_factory=list)
    blocked: bool = False
    redacted: str | None = None
    risk: float = 0.0
    errors: list[str] = field(default_factory=list)


class Guardrails:
    """The compiled guardrail policy."""

    def __init__(
        self,
        detectors: Sequence[DetectorSettings],
        *,
        fail_closed: bool = True,
        clean_gate: bool = True,
    ) -> None:
        """Prefer `from_spec`; this constructor serves tests and custom detector sets.
        `clean_gate=False` calls every detector on every text (`clean_gate`): the same
        findings, slower; the reference of the differential tests."""
        self._settings = tuple(detectors)
        self._fail_closed = fail_closed
        self._by_direction: dict[str, tuple[DetectorSettings, ...]] = {
            d: tuple(s for s in self._settings if d in s.directions)
            for d in ("request", "response")
        }
        self._gates: dict[str, CleanGate | None] = {
            d: gate_for([s.detector for s in settings]) if clean_gate else None
            for d, settings in self._by_direction.items()
        }
        self._deterministic = {
            d: all(getattr(s.detector, "deterministic", False) for s in settings)
            for d, settings in self._by_direction.items()
        }
        self._runs = frozenset(
            (s.detector.name, d) for d, settings in self._by_direction.items() for s in settings
        )
        self._memos: dict[str, dict[Any, None]] = {}

    @classmethod
    def from_spec(
        cls,
        spec: policy_checks.Guardrails,
        *,
        injection_model: Callable[[str], float] | None = None,
        pii_region: str = "US",
        clean_gate: bool = True,
    ) -> Guardrails:
        """Build from ``spec.guardrails`` of a GovernancePolicy.

        `injection_model` overrides the model stage; by default it is loaded (once per
        process) when ``promptInjection.model`` is true. If the model cannot be loaded, every
        injection scan reports an error and ``failMode`` decides (closed: block).
        `pii_region` is the phone numbering plan assumed for numbers without ``+``.
        `clean_gate` as in the constructor.
        """
        settings: list[DetectorSettings] = []
        if spec.prompt_injection is not None and spec.prompt_injection.enabled:
            if injection_model is None and spec.prompt_injection.model:
                injection_model = _shared_model_scorer()
            # A scorer may carry its own calibrated thresholds (onnx_model.OnnxInjectionScorer).
            settings.append(
                DetectorSettings.from_spec(
                    injection.InjectionDetector(
                        model=injection_model,
                        model_min=float(getattr(injection_model, "block_at", 0.9)),
                        model_advisory=float(getattr(injection_model, "advisory_at", 0.7)),
                        model_thresholds=getattr(injection_model, "thresholds", None),
                        fast_model=(
                            ngram.shared_model() if spec.prompt_injection.fast_model else None
                        ),
                    ),
                    spec.prompt_injection,
                )
            )
        if spec.pii is not None and spec.pii.enabled:
            settings.append(
                DetectorSettings.from_spec(
                    pii.PIIDetector(spec.pii.entities, region=pii_region), spec.pii
                )
            )
        if spec.secrets is not None and spec.secrets.enabled:
            settings.append(DetectorSettings.from_spec(secrets.SecretsDetector(), spec.secrets))
        return cls(
            settings,
            fail_closed=spec.fail_mode == policy_base.FailMode.CLOSED,
            clean_gate=clean_gate,
        )

    @property
    def detectors(self) -> tuple[str, ...]:
        """Names of the enabled detectors."""
        return tuple(s.detector.name for s in self._settings)

    def active(self, direction: ScanDirection) -> bool:
        """Whether any detector runs in `direction` (lets callers skip body parsing)."""
        return bool(self._by_direction[direction])

    def deterministic(self, direction: ScanDirection) -> bool:
        """Whether every detector of `direction` gives the same verdict for the same text
        every time (no model stage, whose per-call time budget can turn a verdict into an
        error): callers may then remember texts found clean instead of scanning them again."""
        return self._deterministic[direction]

    def runs(self, detector: str, direction: ScanDirection) -> bool:
        """Whether the detector named `detector` runs in `direction`."""
        return (detector, direction) in self._runs

    def clean_memo(self, name: str) -> dict[Any, None]:
        """The memo named `name` of what this compiled policy found clean (header values,
        URL parts, an answer's key list: see their scanners), created empty on first use.
        It lives and dies with the policy, whose detectors, thresholds and allowlists
        decided each verdict; callers bound its size. A plain attribute lookup: the
        weak-keyed module dictionaries it replaces cost a Python call each per scan."""
        memo = self._memos.get(name)
        if memo is None:
            memo = self._memos[name] = {}
        return memo

    # ------------------------------------------------------------------ text

    def scan(
        self,
        text: str,
        direction: ScanDirection,
        *,
        channel: Channel | None = None,
        stages: injection.Stages = "all",
    ) -> ScanResult:
        """Scan one text. `redacted_text` is set when a redact action changed it.

        `channel` says where the text comes from (`base.Channel`: request text, or a tool
        result / document); by default it follows `direction` (`base.default_channel`).
        Detectors with per-channel thresholds use it and every finding names it.
        `stages` (`injection.Stages`): ``model_only`` runs the injection detector's model
        stage alone (no other detector reports), ``without_model`` everything but it."""
        out = self._scan_text(
            text,
            direction,
            Redactor(),
            None,
            channel=channel or default_channel(direction),
            stages=stages,
        )
        return ScanResult(
            findings=tuple(out.findings),
            blocked=out.blocked,
            redacted_text=out.redacted,
            risk=out.risk,
            errors=tuple(out.errors),
        )

    def _scan_text(
        self,
        text: str,
        direction: ScanDirection,
        redactor: Redactor,
        path: str | None,
        settings: tuple[DetectorSettings, ...] | None = None,
        *,
        channel: Channel,
        stages: injection.Stages = "all",
    ) -> _TextOutcome:
        out = _TextOutcome()
        if settings is None:
            settings = self._by_direction[direction]
        if not settings or not text:
            return out
        gate = self._gates[direction]
        skip = (
            gate.cannot_find(text)
            if gate is not None and len(text) <= MAX_SCAN_CHARS
            else frozenset[str]()
        )
        redact: list[tuple[int, int, str]] = []
        for s in settings:
            if skip and s.detector.name in skip:
                continue  # it cannot find anything here (clean_gate)
            accepted = self._accepted_or_error(s, text, out, channel, stages)
            for c in accepted:
                if self._record(out, s, c, c.start, c.end, path, channel):
                    redact.append((c.start, c.end, c.entity))
        if redact:
            out.redacted = apply_redactions(text, redact, redactor)
        return out

    # ------------------------------------------------------------------ JSON

    def scan_json(
        self,
        obj: Any,
        direction: ScanDirection,
        *,
        trust_agent_instructions: bool = True,
        only: Collection[str] | None = None,
        channel: Channel | None = None,
        stages: injection.Stages = "all",
    ) -> ScanResult:
        """Scan every string value of a parsed JSON document (object keys are not scanned).

        Findings carry the JSON pointer of their string in `path`. When something was
        redacted, `redacted_obj` is a copy of the document with the redacted strings replaced;
        the input is never modified and the structure stays the same, so it serialises to
        valid JSON. Placeholders are consistent across the whole document.

        With `trust_agent_instructions` (default), the injection detector skips the agent's
        own instructions in a request: chat messages whose ``role`` is ``system`` or
        ``developer``, and the top-level ``system`` / ``instructions`` fields (Anthropic
        Messages, OpenAI Responses). They are written by the agent's owner and legitimately
        say things like "never tell the user about internal tools". PII and secret detectors
        still scan them. Tool results and user messages are always scanned.

        `only` limits the scan to the detectors of those names (the URL and header scan
        runs the secrets detector alone).

        `channel` is the document's channel (default: by `direction`, as in `scan`); the
        strings of tool results it carries (`json_strings.JsonString.tool_result`: messages
        with role tool/function, ``tool_result`` / ``function_call_output`` blocks, ...)
        are judged as ``document`` whatever it is. `stages` as in `scan`.
        """
        out = _TextOutcome()
        redact: dict[int, list[tuple[int, int, str]]] = {}
        settings = self._by_direction[direction]
        if only is not None:
            settings = tuple(s for s in settings if s.detector.name in only)
        trust = trust_agent_instructions and direction == "request"
        base: Channel = channel or ("request" if direction == "request" else "document")
        strings = collect_strings(obj, min_chars=MIN_FINDING_CHARS) if settings else []
        # one loop, no generator: each Python-level call is paid cold on every request
        channels: list[Channel] = []
        mixed = False
        for js in strings:
            if js.tool_result:
                channels.append("document")
                mixed = True
            else:
                channels.append(base)
        # one channel for every string (the common case): no grouping to work out
        one_channel: tuple[Channel, ...] | None = None if mixed else (base,) if strings else ()
        joined_cache: dict[tuple[bool, Channel | None], JoinedStrings] = {}
        gate = self._gates[direction]
        gated = gate.names if gate is not None else frozenset[str]()
        skip_cache: dict[tuple[bool, Channel | None], frozenset[str]] = {}
        for s in settings:
            # The strings of the document are scanned as one text per channel (one pass per
            # detector instead of one per string); findings are mapped back to their string.
            # Detectors that judge every channel alike see all the strings at once.
            name = s.detector.name
            skip_trusted = trust and name == injection.NAME
            blind = name in _CHANNEL_BLIND
            groups: tuple[Channel | None, ...] = (
                (None,)
                if blind
                else one_channel
                if one_channel is not None
                else tuple(dict.fromkeys(channels))
            )
            for group in groups:
                key = (skip_trusted, group)
                joined = joined_cache.get(key)
                if joined is None:
                    parts = [
                        (i, js.value)
                        for i, js in enumerate(strings)
                        if not (skip_trusted and js.trusted)
                        and (blind or not js.label)
                        and (group is None or channels[i] == group)
                    ]
                    joined = joined_cache[key] = JoinedStrings(
                        JOIN.join([v for _, v in parts]), parts
                    )
                if not joined.text:
                    continue
                if name in gated:
                    skip = skip_cache.get(key)
                    if skip is None:
                        skip = skip_cache[key] = (
                            gate.cannot_find(joined.text)  # type: ignore[union-attr]
                            if len(joined.text) <= MAX_SCAN_CHARS
                            else frozenset()
                        )
                    if name in skip:
                        continue  # it cannot find anything here (clean_gate)
                accepted = self._accepted_or_error(s, joined.text, out, group or base, stages)
                for c in accepted:
                    i, start, end = joined.locate(c.start, c.end)
                    if self._record(out, s, c, start, end, strings[i].pointer, channels[i]):
                        redact.setdefault(i, []).append((start, end, c.entity))
        replaced: dict[str, str] = {}
        if redact:
            redactor = Redactor()
            for i in sorted(redact):  # document order: placeholders numbered as they appear
                pointer, value = strings[i].pointer, strings[i].value
                replaced[pointer] = apply_redactions(value, redact[i], redactor)
        if len(out.findings) > 1:
            order = {js.pointer: i for i, js in enumerate(strings)}
            out.findings.sort(key=lambda f: (order.get(f.path or "", len(order)), f.start))
        return ScanResult(
            findings=tuple(out.findings),
            blocked=out.blocked,
            redacted_text=None,
            risk=out.risk,
            redacted_obj=rebuild(obj, "", replaced) if replaced else None,
            errors=tuple(out.errors),
        )

    def _accepted_or_error(
        self,
        s: DetectorSettings,
        text: str,
        out: _TextOutcome,
        channel: Channel,
        stages: injection.Stages = "all",
    ) -> list[Candidate]:
        """`_accepted`, with a detector error recorded in `out` (blocking when fail-closed)
        instead of raised: a broken detector must not crash the request pipeline."""
        if stages == "model_only" and not _has_model(s):
            return []
        try:
            return self._accepted(s, text, channel, stages)
        except Exception as e:
            out.errors.append(f"{s.detector.name}:{type(e).__name__}")
            if self._fail_closed:
                out.blocked = True
            return []

    @staticmethod
    def _record(
        out: _TextOutcome,
        s: DetectorSettings,
        c: Candidate,
        start: int,
        end: int,
        path: str | None,
        channel: Channel,
    ) -> bool:
        """Add the finding of one accepted candidate to `out` (its risk, a block); True when
        the policy asks for it to be redacted."""
        out.findings.append(
            Finding(
                detector=s.detector.name,
                type=c.entity,
                score=c.score,
                start=start,
                end=end,
                action="log" if c.advisory else s.action,
                risk=s.risk,
                via=c.via,
                path=path,
                monitor_only=s.monitor_only,
                encoding=c.encoding,
                channel=channel,
            )
        )
        if s.monitor_only:
            return False
        out.risk += s.risk
        if c.advisory:
            return False
        if s.action == "block":
            out.blocked = True
        return s.action == "redact"

    def model_stage(self, direction: ScanDirection) -> bool:
        """Whether the injection detector runs in `direction` with a model stage."""
        return any(_has_model(s) for s in self._by_direction[direction])

    def _accepted(
        self, s: DetectorSettings, text: str, channel: Channel, stages: injection.Stages = "all"
    ) -> list[Candidate]:
        """Candidates of one detector that pass its threshold and allowlist (may raise)."""
        if len(text) > MAX_SCAN_CHARS:
            raise TextTooLarge(f"{len(text)} characters")
        out = []
        found = (
            s.detector.detect(text, channel=channel, stages=stages)
            if stages != "all" and isinstance(s.detector, injection.InjectionDetector)
            else s.detector.detect(text, channel=channel)
        )
        if not found:
            return []  # the everyday clean text: no candidates to sort, weigh or allow
        for c in _dedupe(found):
            if c.score < s.threshold:
                continue
            if s.allowlist and any(a.search(text[c.start : c.end]) for a in s.allowlist):
                continue
            out.append(c)
        return out

    # ------------------------------------------------------------------ streams

    def stream(
        self,
        direction: ScanDirection,
        *,
        holdback: int = 256,
        min_release: int = 64,
        channel: Channel | None = None,
    ) -> stream_scanner.StreamScanner:
        """A scanner for text that arrives in pieces (SSE deltas); see `StreamScanner`.
        `channel` as in `scan` (default: by `direction`)."""
        from haltgate.governance.guardrails.stream_scanner import StreamScanner

        return StreamScanner(
            self,
            direction,
            holdback=holdback,
            min_release=min_release,
            channel=channel or default_channel(direction),
        )


@functools.cache
def _shared_model_scorer() -> Callable[[str], float]:
    """The model stage, loaded once per process (policy reloads reuse it): the fine-tuned
    int8 MiniLM classifier run by onnxruntime that ``onnx_model.DEFAULT`` names (today
    stackone-defender's; haltgate's own is shipped beside it, see docs/guardrails.md
    section 4 for why it is not the default)."""
    from haltgate.governance.guardrails import model, onnx_model

    try:
        return onnx_model.load_default_scorer()
    except model.ModelUnavailable as e:
        log.error("guardrails model stage unavailable: %s", e)
        reason = str(e)

        def unavailable(text: str) -> float:
            raise model.ModelUnavailable(reason)

        return unavailable


def _has_model(s: DetectorSettings) -> bool:
    return isinstance(s.detector, injection.InjectionDetector) and s.detector.has_model


def _dedupe(cands: Sequence[Candidate]) -> list[Candidate]:
    best: dict[tuple[str, int, int], Candidate] = {}
    for c in cands:
        key = (c.entity, c.start, c.end)
        old = best.get(key)
        if old is None or c.score > old.score:
            best[key] = c
    return sorted(best.values(), key=lambda c: (c.start, -c.end))
