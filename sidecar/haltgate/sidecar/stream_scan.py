"""Response guardrails on a relayed SSE stream, one parsed event at a time.

:meth:`StreamScan.events` only scans: it touches nothing but its own state, so the relay
may run it on the guardrails model's thread (when the policy turns the model stage on, a
forward pass per text takes milliseconds) while the event loop serves every other call.
What a scan found (findings, risk, detector failures) is applied to the call and the
budget by :meth:`StreamScan.verdict`, on the event loop.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence
from typing import Any

from haltgate.governance.errors import DeniedError, HaltgateError, UnavailableError
from haltgate.governance.guardrails.answer_json import (
    NOT_PARSED,
    dump_answer_json,
    parse_answer_json,
    scan_answer_json,
)
from haltgate.governance.guardrails.json_strings import MIN_FINDING_CHARS, iter_strings, rebuild
from haltgate.governance.guardrails.sse import ChatStreamGuard
from haltgate.governance.guardrails.stream_scanner import MODEL_MIN_WORDS, words
from haltgate.governance.policy_base import FailMode, FailureType
from haltgate.sidecar.call import Call
from haltgate.sidecar.decision_audit import DecisionAudit
from haltgate.sidecar.sse import SSEEvent

__all__ = ["StreamScan"]


class StreamScan:
    """Response guardrails on a relayed SSE stream, one parsed event at a time.

    LLM chat streams go through :class:`ChatStreamGuard` (text held back and redacted across
    events, provider-shaped events out); other streams (MCP over SSE) have each event's JSON
    scanned whole. Events come out re-encoded (``event:`` and ``data:`` fields only); an
    event the SSE parser had to skip as oversized is not relayed: it could not be scanned.
    """

    __slots__ = (
        "_blocked_code",
        "_call",
        "_chat",
        "_errors",
        "_findings",
        "_g",
        "_pending",
        "_pipeline",
        "_risk",
        "_seen",
        "_seen_chars",
    )

    def __init__(self, pipeline: DecisionAudit, call: Call, guardrails: Any, *, chat: bool) -> None:
        self._pipeline = pipeline
        self._call = call
        self._g = guardrails
        self._chat = (
            ChatStreamGuard(guardrails, "response", channel=call.answer_channel) if chat else None
        )
        self._findings = 0
        self._errors = 0
        self._risk = 0.0
        self._blocked_code: str | None = None
        self._pending: list[tuple[Sequence[Any], float, Sequence[str], bool]] = []
        """What the scans found, applied by :meth:`verdict` (on the event loop)."""
        self._seen_chars = 0
        self._seen: set[str] = set()
        """Event names and chat event strings found clean (a stream repeats its ids, model
        name and event types in every event: each is scanned once)."""

    def events(self, events: Sequence[SSEEvent]) -> bytes:
        """The bytes to send for ``events`` (empty once the stream is blocked)."""
        if self._call.controls.monitor:
            return self._observed(events)
        return self._scanned(events)

    def _observed(self, events: Sequence[SSEEvent]) -> bytes:
        """Monitor mode: every event is scanned (findings, risk) and relayed as it came;
        the first block is noted as the refusal the policy would make, and the scan stops
        there (the rest of the stream is relayed unscanned)."""
        if self._blocked_code is None:
            self._scanned(events)
            if self._blocked_code is not None:
                code = self._blocked_code
                self._pipeline.refuse_or_note(
                    self._call,
                    "response",
                    UnavailableError("the guardrails failed on the stream", code=code)
                    if code == "guardrails_error"
                    else DeniedError(
                        "a guardrail blocked the response stream",
                        code=code,
                        failure_type=FailureType.SAFETY,
                    ),
                )
                self._blocked_code = ""  # noted: not a refusal (verdict() stays None)
        return b"".join(_sse_encode(e.event, e.data.encode()) for e in events)

    def _scanned(self, events: Sequence[SSEEvent]) -> bytes:
        out: list[bytes] = []
        for event in events:
            if self._blocked_code is not None:
                break
            name = self._name(event.event)
            if name is None:
                break
            # Parsed as a client's json.loads parses it (NaN, lone surrogates included).
            obj = parse_answer_json(event.data)
            if obj is NOT_PARSED:
                if event.data == "[DONE]" and self._chat is not None:
                    # The end of an OpenAI stream: text still held back goes out first.
                    out += [_sse_encode(name, dump_answer_json(e)) for e in self._finish()]
                    if self._blocked_code is not None:
                        break
                # Plain-text data ([DONE] and such, or a tool's text): scanned as text.
                text = self._text(event.data)
                if text is not None:
                    out.append(_sse_encode(name, text.encode()))
                continue
            try:
                sent = self._transform(obj)
            except Exception as e:  # a guardrail bug must not open the gate by accident
                if self._call.controls.spec.guardrails.fail_mode is not FailMode.OPEN:
                    self._blocked_code = "guardrails_error"
                    break
                self._pending.append(((), 0.0, [f"stream:{type(e).__name__}"], False))
                sent = [obj]
            for new in sent:
                sent_name = name
                if name != "message" and isinstance(new, dict) and isinstance(new.get("type"), str):
                    sent_name = new["type"]  # a flushed text delta added before an end event
                out.append(_sse_encode(sent_name, dump_answer_json(new)))
        return b"".join(out)

    def end(self) -> bytes:
        """A stream that closed without its own end marker (``[DONE]``, a finish reason):
        the text the chat guard still holds back for redaction is scanned and sent, as at
        ``[DONE]``. Empty when nothing is held, once blocked, and in monitor mode (where
        every event was relayed as it came)."""
        if self._chat is None or self._blocked_code is not None or self._call.controls.monitor:
            return b""
        return b"".join(_sse_encode("message", dump_answer_json(e)) for e in self._finish())

    def _finish(self) -> list[Any]:
        assert self._chat is not None
        try:
            sent = self._chat.finish()
        except Exception as e:  # a guardrail bug must not open the gate by accident
            if self._call.controls.spec.guardrails.fail_mode is not FailMode.OPEN:
                self._blocked_code = "guardrails_error"
            else:
                self._pending.append(((), 0.0, [f"stream:{type(e).__name__}"], False))
            return []
        if self._chat.blocked:
            self._blocked_code = self._chat_block_code()
            return []
        return sent

    def _chat_block_code(self) -> str:
        assert self._chat is not None
        return next(
            (
                f"guardrail_{f.detector}"
                for f in self._chat.findings
                if f.action == "block" and not f.monitor_only
            ),
            "guardrail_error",
        )

    def _name(self, name: str) -> str | None:
        """An event's name to send (``None``: blocked): clients read it (``event.event``),
        so a name that is not a plain type is scanned like data."""
        if name == "message" or name in self._seen:
            return name
        new = self._text(name)
        if new == name:
            self._remember(name)
        return new

    def _text(self, data: str) -> str | None:
        """Data of a plain-text event to send (``None``: blocked)."""
        if len(data) < 6 or data == "[DONE]":
            return data
        try:
            result = self._g.scan(data, "response", channel=self._call.answer_channel)
        except Exception as e:  # a guardrail bug must not open the gate by accident
            if self._call.controls.spec.guardrails.fail_mode is not FailMode.OPEN:
                self._blocked_code = "guardrails_error"
                return None
            self._pending.append(((), 0.0, [f"stream:{type(e).__name__}"], False))
            return data
        self._pending.append((result.findings, result.risk, result.errors, result.blocked))
        if result.blocked:
            self._blocked_code = result.code or "guardrail_blocked"
            return None
        return result.redacted_text if result.redacted_text is not None else data

    def _transform(self, obj: Any) -> list[Any]:
        if self._chat is not None:
            sent = self._chat.on_event(obj)
            if self._chat.blocked:
                self._blocked_code = self._chat_block_code()
                return sent
            out = []
            for event in sent:
                event = self._rest_of_chat_event(event)
                if self._blocked_code is not None:
                    return []
                out.append(event)
            return out
        result = scan_answer_json(self._g, obj, self._call.answer_channel)
        self._pending.append((result.findings, result.risk, result.errors, result.blocked))
        if result.blocked:
            self._blocked_code = result.code or "guardrail_blocked"
            return []
        return [result.redacted_obj if result.redacted_obj is not None else obj]

    def _rest_of_chat_event(self, event: Any) -> Any:
        """``event`` with its strings the chat guard does not read scanned too: a refusal
        or reasoning delta, a Responses ``response.completed`` repeating the whole text,
        any event type it does not know. Tool-call arguments stay out (see `sse`)."""
        if not self._anything_new(event):
            return event  # the usual delta: its text is the chat guard's, the rest seen
        parts: dict[str, str] = {}
        for s in iter_strings(event, "", trusted=False):
            if len(s.value) < MIN_FINDING_CHARS or s.value in self._seen:
                continue
            if s.label:  # an id or a type: never scanned, remembered as such
                self._remember(s.value)
                continue
            if not _chat_reads(event, s.pointer):
                parts[s.pointer] = s.value
        if not parts:
            return event
        result = self._scan_parts(list(parts.values()))
        if result.blocked:
            self._blocked_code = result.code or "guardrail_blocked"
            return event
        if result.redacted_obj is not None:
            replaced = {
                pointer: new
                for (pointer, old), new in zip(parts.items(), result.redacted_obj, strict=True)
                if new != old
            }
            return rebuild(event, "", replaced)
        if not result.findings:
            for value in parts.values():
                self._remember(value)
        return event

    def _scan_parts(self, values: list[str]) -> Any:
        """Scan the strings of a chat event that the chat guard does not read. The model
        stage reads only those of at least `MODEL_MIN_WORDS` words: an event's own fields
        (``chat.completion.chunk``, a model name) and a few words of a reasoning delta are
        not prose it can judge alone (`stream_scanner`). Its findings are noted here."""
        channel = self._call.answer_channel
        if not self._g.model_stage("response"):
            result = self._g.scan_json(values, "response", channel=channel)
        else:
            result = self._g.scan_json(values, "response", channel=channel, stages="without_model")
            prose = [v if words(v) >= MODEL_MIN_WORDS else "" for v in values]
            if not result.blocked and any(prose):
                found = self._g.scan_json(prose, "response", channel=channel, stages="model_only")
                result = dataclasses.replace(
                    result,
                    findings=(*result.findings, *found.findings),
                    risk=result.risk + found.risk,
                    errors=(*result.errors, *found.errors),
                    blocked=found.blocked,
                )
        self._pending.append((result.findings, result.risk, result.errors, result.blocked))
        return result

    def _remember(self, clean: str) -> None:
        """Remember a string found clean (a Responses stream repeats its whole text in
        three end events: scanned once), within 4,096 strings and 1 Mi characters."""
        if len(self._seen) < _SEEN_MAX and self._seen_chars + len(clean) <= _SEEN_CHARS:
            self._seen.add(clean)
            self._seen_chars += len(clean)

    def _anything_new(self, event: Any) -> bool:
        """Whether ``event`` has a string the chat guard does not read and this stream has
        not found clean yet (a walk without pointers: the common case costs little)."""
        stack = [event]
        covered: set[str] | None = None
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
            elif (
                isinstance(item, str) and len(item) >= MIN_FINDING_CHARS and item not in self._seen
            ):
                if covered is None:
                    covered = _chat_values(event)
                if item not in covered:
                    return True
        return False

    def verdict(self) -> HaltgateError | None:
        """Account new findings, risk and detector failures; the refusal once blocked.
        Runs on the event loop (it changes the call and the budget)."""
        pending, self._pending = self._pending, []
        for found in pending:
            self._note(*found)
        chat = self._chat
        if chat is not None:
            new = chat.findings[self._findings :]
            errors = chat.errors[self._errors :]
            self._findings, self._errors = len(chat.findings), len(chat.errors)
            risk, self._risk = chat.risk - self._risk, chat.risk
            self._note(new, risk, errors, chat.blocked)
        if not self._blocked_code:  # None, or "" once noted in monitor mode
            return None
        return DeniedError(
            "a guardrail blocked the response stream",
            code=self._blocked_code,
            failure_type=FailureType.SAFETY,
        )

    def _note(
        self, findings: Sequence[Any], risk: float, errors: Sequence[str], blocked: bool
    ) -> None:
        call = self._call
        if findings:
            call.findings.extend(f.to_dict() for f in findings)
        if risk:
            self._pipeline.budget.add_risk(time.time(), risk, "guardrail_finding")
        if errors and not blocked:
            self._pipeline._guardrail_fail_open(call, errors)


_SEEN_MAX = 4096
_SEEN_CHARS = 1 << 20

_CHAT_TEXT = re.compile(r"/choices/\d+/delta/(?:content|tool_calls/\d+/function/arguments)")
_CHAT_FIELDS = {
    "content_block_delta": ("/delta/text", "/delta/partial_json"),
    "response.output_text.delta": ("/delta",),
    "response.output_text.done": ("/text",),
    "response.function_call_arguments.delta": ("/delta",),
    "response.function_call_arguments.done": ("/arguments",),
}
"""The strings `ChatStreamGuard` scans itself (text held back across events) or leaves
to the tool-call argument rule, by event type."""


def _chat_values(event: Any) -> set[str]:
    """The values at the pointers `_chat_reads` names."""
    out: set[str] = set()
    if isinstance(event, dict) and isinstance(event.get("choices"), list):
        for choice in event["choices"]:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            if isinstance(delta.get("content"), str):
                out.add(delta["content"])
            for call in delta.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    out.add(function["arguments"])
        return out
    kind = event.get("type") if isinstance(event, dict) else None
    for pointer in _CHAT_FIELDS.get(kind, ()) if isinstance(kind, str) else ():
        value: Any = event
        for part in pointer.split("/")[1:]:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str):
            out.add(value)
    return out


def _chat_reads(event: Any, pointer: str) -> bool:
    if isinstance(event, dict) and isinstance(event.get("choices"), list):
        return _CHAT_TEXT.fullmatch(pointer) is not None
    kind = event.get("type") if isinstance(event, dict) else None
    return isinstance(kind, str) and pointer in _CHAT_FIELDS.get(kind, ())


def _sse_encode(event: str, data: bytes) -> bytes:
    """One SSE event: ``event:`` unless the default, one ``data:`` line per line of data."""
    head = b"" if event == "message" else b"event: " + event.encode() + b"\n"
    lines = data.split(b"\n")
    return head + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"
