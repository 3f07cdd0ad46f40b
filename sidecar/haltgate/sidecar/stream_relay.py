"""Relaying an SSE answer event by event: metered against the budget (cut after the event
that crosses it), scanned by the response guardrails, and bounded in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from haltgate.governance.errors import DeniedError, HaltgateError, UpstreamError
from haltgate.governance.guardrails.model_clock import ModelClock, run_with
from haltgate.governance.guardrails.response_body import StreamDecoder, Unscannable
from haltgate.governance.policy_base import FailureType
from haltgate.sidecar import mcp_answers
from haltgate.sidecar import responses as r
from haltgate.sidecar.answer_relay import AnswerRelay, scans_answers
from haltgate.sidecar.bodybudget import MemoryBudgetError
from haltgate.sidecar.budget import Budget
from haltgate.sidecar.budget_stages import budget_denial
from haltgate.sidecar.call import Call, overhead_ms
from haltgate.sidecar.injected_usage import HiddenUsage
from haltgate.sidecar.pipeline_request import PipelineRequest, start_answer
from haltgate.sidecar.relay_headers import response_headers
from haltgate.sidecar.response_guard import content_coding
from haltgate.sidecar.sse import EventHold, SSEEvent, SSEParser
from haltgate.sidecar.sse_frames import EventFramer, parse_event
from haltgate.sidecar.stream_scan import StreamScan
from haltgate.sidecar.upstream_response import UpstreamResponse
from haltgate.sidecar.usage import UsageReader

__all__ = ["StreamRelay"]


_STREAM_FREE_BYTES = 64 * 1024
"""Unfinished-event bytes a stream holds without charging the body memory budget."""

_HEAD_HOLD_SECONDS = 0.005
"""How long a stream's head waits for its first body bytes to go out with them (an
upstream usually sends its first event right behind its head); past it, it goes alone."""


def _send_head(writer: AbstractStreamWriter) -> None:
    """A stream's head whose first body bytes did not come within the hold: send it.
    (An older aiohttp writes the head in ``prepare`` and has no ``send_headers``.)"""
    send = getattr(writer, "send_headers", None)
    try:
        if send is not None:
            send()
    except (ConnectionError, RuntimeError):
        pass  # the agent left: the relay notices at its next write


class StreamRelay(AnswerRelay):
    """Relays SSE answers."""

    async def relay_stream(
        self, request: PipelineRequest, call: Call, upstream: UpstreamResponse
    ) -> web.StreamResponse:
        """Relay an SSE answer, metering it event by event; cut it if the budget is crossed.

        A metered stream is checked after each event and cut right after the event that
        crossed the budget (at most one event beyond it), and every event the agent is
        charged for was relayed to it. What the sidecar added to the stream (a usage chunk
        the agent did not ask for) is read and not relayed."""
        classified = call.classified
        assert classified is not None
        guardrails = call.controls.guardrails
        decoder: StreamDecoder | None = None
        # Every Content-Encoding header, in order (a client undoes them all).
        coding = content_coding(upstream.headers).strip().lower() or "identity"
        if guardrails is not None and guardrails.active("response") and coding != "identity":
            # The guardrails read events: a compressed stream is decoded as it comes (and
            # relayed decoded); a coding that cannot be decoded follows failMode.
            try:
                try:
                    decoder = StreamDecoder(coding, self.settings.max_decoded_response_bytes)
                except Unscannable as e:
                    self._unscannable(call, e)
                    guardrails = None
            except HaltgateError as refusal:
                self.settle_budget(call, None, False, refusal.code, None)
                self._finish(call, "error", refusal.code)
                self._audit_outcome(call, upstream.status, None, decision="error", err=refusal)
                return await self._send_error(request, call, refusal)
        try:
            # The headers go out before the first event: their values are scanned first.
            header_values = (
                await self._scan(call, self.scan_answer_headers, call, upstream)
                if scans_answers(call)
                else None
            )
        except HaltgateError as refusal:
            self.settle_budget(call, None, False, refusal.code, None)
            decision = "deny" if isinstance(refusal, DeniedError) else "error"
            self._finish(call, decision, refusal.code)
            self._audit_outcome(call, upstream.status, None, decision=decision, err=refusal)
            return await self._send_error(request, call, refusal)
        resp = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=response_headers(upstream.headers, call, None, header_values),
        )
        if decoder is not None:
            resp.headers.popall("Content-Encoding", None)
        resp.headers[r.OVERHEAD_HEADER] = overhead_ms(call)
        # The head goes out with the first bytes of the body (one write, one wake-up of
        # the agent instead of two), or on its own after _HEAD_HOLD_SECONDS without them.
        resp._send_headers_immediately = False
        writer = await start_answer(resp, request)
        head_timer = (
            asyncio.get_running_loop().call_later(_HEAD_HOLD_SECONDS, _send_head, writer)
            if writer is not None
            else None
        )
        max_event = self.settings.max_sse_event_bytes
        reader = (
            UsageReader(classified.dialect, classified.view.model)
            if classified.dialect is not None
            else None
        )
        hidden = HiddenUsage() if classified.wants_usage_injection else None
        # Response guardrails rewrite the stream event by event (redaction held back across
        # events, see ChatStreamGuard); without them the bytes are relayed unchanged.
        scan = (
            StreamScan(self, call, guardrails, chat=reader is not None)
            if guardrails is not None and guardrails.active("response")
            else None
        )
        # Server requests the policy denies (sampling, elicitation) never reach the agent.
        server_filter = mcp_answers.stream_filter(call) if classified.mcp is not None else None
        if scan is not None and server_filter is not None:
            scan = server_filter.wrap(scan)
        parser = SSEParser(max_event) if scan is not None else None
        model = self.model_thread(call) if scan is not None else None
        """The guardrails model's thread: event scans run there when the model stage is
        on (as whole bodies' do), so the loop is not stalled by a forward pass."""
        framer = EventFramer(max_event) if scan is None and reader is not None else None
        """A metered stream without guardrails: split into raw events, each read, checked
        and relayed as it came."""
        hold = EventHold(max_event)
        """An unmetered stream: the start of an event not complete yet is relayed with the
        rest of its event, so a cut (or an upstream failure) never leaves half an event
        before the error event."""
        digest = hashlib.blake2b(digest_size=16) if reader is None else None
        """The stream's content digest (stagnation) when no usage reader makes one."""
        first = True
        """Nothing of the body was sent yet."""
        last: list[bytes] = []
        """The stream's last bytes, sent with its end (``write_eof``) in one write."""

        async def send(data: bytes) -> bool:
            """Write ``data`` (the head with it, if still held); False: the agent left."""
            nonlocal head_timer
            if head_timer is not None:
                head_timer.cancel()  # the head goes with these bytes
                head_timer = None
            try:
                await resp.write(data)
            except (ConnectionError, RuntimeError):
                return False
            return True

        guard = StreamGuard(call, self.budget, self.refuse_or_note)
        cut: HaltgateError | None = None
        truncated = False
        client_gone = False
        charged = 0
        """Bytes of unfinished events charged to the body memory budget (grows only)."""
        try:
            async for chunk in upstream:
                if digest is not None:
                    digest.update(chunk)
                if decoder is not None:
                    try:
                        chunk = decoder.feed(chunk)
                    except Unscannable as e:
                        cut = self._stream_unscannable(call, e)
                        if cut is not None:
                            break
                        # Fail open: the rest as it comes, metered but not scanned.
                        decoder = scan = parser = None
                        if reader is not None:
                            framer = EventFramer(max_event)
                if parser is not None:
                    assert scan is not None
                    events = parser.feed(chunk)
                    if parser.oversized:
                        # An event too large to hold could not be scanned: end the stream
                        # with a typed error, never relay it unscanned or drop it silently.
                        cut = event_too_large(max_event)
                        break
                    held = parser.buffered
                    if first and len(events) > 1:
                        # The stream's first event goes out (with the head) before the rest
                        # of an upstream's burst is scanned: the agent's first byte does
                        # not wait for the whole chunk.
                        first = False
                        early, cut = await scan_events(
                            events[:1], scan, reader, guard, hidden, model, call.model_clock
                        )
                        if early and not await send(early):
                            client_gone = True
                            break
                        events = events[1:] if cut is None else []
                    out, more = await scan_events(
                        events, scan, reader, guard, hidden, model, call.model_clock
                    )
                    cut = cut or more
                elif framer is not None:
                    assert reader is not None
                    raws = framer.feed(chunk)
                    if framer.overflow:
                        cut = event_too_large(max_event)
                        break
                    held = framer.buffered
                    if first and len(raws) > 1:
                        # As above: the first event out before the rest is read.
                        first = False
                        early, cut = meter_events(raws[:1], reader, guard, hidden)
                        if server_filter is not None:
                            early = server_filter.raw(early)
                        if early and not await send(early):
                            client_gone = True
                            break
                        raws = raws[1:] if cut is None else []
                    out, more = meter_events(raws, reader, guard, hidden)
                    cut = cut or more
                else:
                    out = hold.feed(chunk)
                    if hold.overflow:
                        cut = event_too_large(max_event)
                        break
                    held = hold.size
                if cut is None and held > charged:
                    try:
                        charged = self._charge_stream(call, charged, held)
                    except MemoryBudgetError as e:
                        cut = e
                if out and server_filter is not None and parser is None:
                    out = server_filter.raw(out)  # the scan path is filtered in the scan
                if server_filter is not None and server_filter.unanswered:
                    self.answer_server(request, call, upstream, server_filter.take_unanswered())
                if out:
                    first = False
                    # Sent even when the stream is cut after them: the agent receives
                    # every event it is charged for.
                    if model is None and (cut is not None or upstream.at_end):
                        last.append(out)  # with the stream's end: one write, not two
                    elif not await send(out):
                        client_gone = True
                        break
                if cut is not None:
                    break
        except (TimeoutError, OSError):
            truncated = True
        if head_timer is not None:
            head_timer.cancel()  # whatever is written next carries the head
        if not client_gone:
            try:
                # What was written ends at an event boundary: the error event parses.
                if cut is not None:
                    self.metrics.streams_cut.labels(cut.code).inc()
                    last.append(r.sse_error_event(cut, call.decision_id))
                elif truncated:
                    self.metrics.streams_cut.labels("upstream_truncated").inc()
                    err = UpstreamError(
                        "the upstream stream ended early", code="upstream_truncated"
                    )
                    last.append(r.sse_error_event(err, call.decision_id))
                elif parser is not None and parser.pending:
                    # A last event without its blank line: complete it, scan it, send it.
                    assert scan is not None
                    out, cut = await scan_events(
                        parser.feed(b"\n\n"), scan, reader, guard, hidden, model, call.model_clock
                    )
                    if out:
                        last.append(out)
                    if cut is not None:
                        self.metrics.streams_cut.labels(cut.code).inc()
                        last.append(r.sse_error_event(cut, call.decision_id))
                elif framer is not None and (rest := framer.rest()):
                    # A last event without its blank line: read it, relay it as it came.
                    assert reader is not None
                    out, _ = meter_events([rest], reader, guard, hidden)
                    if out:
                        last.append(out)
                elif rest := hold.rest():
                    # The upstream's own last bytes, unchanged (filtered like the rest).
                    last.append(server_filter.raw(rest) if server_filter else rest)
                if scan is not None and cut is None and not truncated:
                    # Ended without [DONE] or a finish reason: what the chat guard holds
                    # back is scanned and sent, not lost.
                    if model is not None and last:
                        # The model's pass takes milliseconds: what is ready goes first.
                        await resp.write(b"".join(last))
                        last.clear()
                    tail = (
                        await asyncio.get_running_loop().run_in_executor(
                            model, run_with, call.model_clock, scan.end
                        )
                        if model is not None
                        else scan.end()
                    )
                    cut = scan.verdict()
                    if cut is not None:
                        self.metrics.streams_cut.labels(cut.code).inc()
                        last.append(r.sse_error_event(cut, call.decision_id))
                    elif tail:
                        last.append(tail)
                await resp.write_eof(b"".join(last))
            except (ConnectionError, RuntimeError):
                client_gone = True
        if server_filter is not None and server_filter.unanswered:
            self.answer_server(request, call, upstream, server_filter.take_unanswered())
        complete = cut is None and not truncated and not client_gone
        # A dialect guessed from the body shape (issue 15) without usage found: the usage is
        # unknown, so the reservation is charged (None), never an estimate of ours.
        counts = (
            reader.result(complete=complete, input_estimate=classified.input_estimate)
            if reader is not None and (reader.found or not classified.dialect_guessed)
            else None
        )
        if cut is None and truncated:  # recorded as what it was, not as a clean allow
            cut = UpstreamError("the upstream stream ended early", code="upstream_truncated")
        upstream_fault = isinstance(cut, UpstreamError)
        ok = upstream.status < 500 and not truncated and not upstream_fault
        self.settle_budget(
            call,
            counts,
            ok,
            None if ok else "stream_failed",
            reader.content_digest
            if reader is not None
            else (digest.hexdigest() if digest is not None else None),
        )
        decision, code = (
            ("allow", None)
            if cut is None
            else ("deny" if isinstance(cut, DeniedError) else "error", cut.code)
        )
        self._finish(call, decision, code)
        self._audit_outcome(call, upstream.status, counts, decision=decision, err=cut)
        return resp

    def _charge_stream(self, call: Call, charged: int, held: int) -> int:
        """Charge the bytes a stream holds (unfinished events) past the first 64 KiB to
        the body memory budget: many streams that never end an event are bounded like
        bodies are. Returns the new charge (raises MemoryBudgetError: cut the stream)."""
        if held <= _STREAM_FREE_BYTES:
            return charged
        self._hold(call, held - charged, "response")
        return held


def meter_events(
    raws: Sequence[bytes], reader: UsageReader, guard: StreamGuard, hidden: HiddenUsage | None
) -> tuple[bytes, HaltgateError | None]:
    """Read framed events one at a time; stop after the one that crosses the budget.
    Returns the bytes to relay (those events, as they came, minus what is hidden) and the
    reason to cut, if any."""
    if len(raws) == 1 and hidden is None:
        reader.read_event(parse_event(raws[0]))
        return raws[0], guard.check(reader)
    out: list[bytes] = []
    cut: HaltgateError | None = None
    for raw in raws:
        event = parse_event(raw)
        obj = reader.read_event(event)
        visible = hidden.visible(raw, event, obj) if hidden is not None else raw
        if visible:
            out.append(visible)
        cut = guard.check(reader)
        if cut is not None:
            break
    return b"".join(out), cut


async def scan_events(
    events: Sequence[SSEEvent],
    scan: StreamScan,
    reader: UsageReader | None,
    guard: StreamGuard,
    hidden: HiddenUsage | None,
    model: Executor | None = None,
    clock: ModelClock | None = None,
) -> tuple[bytes, HaltgateError | None]:
    """Parsed events through response guardrails, one at a time (a budget cut after the
    event that crossed it, as for :func:`meter_events`). With ``model`` (the guardrails
    model's thread) each event is scanned there, under the call's model ``clock``; usage,
    budget and verdicts stay here."""
    out: list[bytes] = []
    cut: HaltgateError | None = None
    loop = asyncio.get_running_loop() if model is not None else None
    for event in events:
        shown: SSEEvent | None = event
        if reader is not None:
            obj = reader.read_event(event)
            if hidden is not None:
                shown = hidden.visible_event(event, obj)
            cut = guard.check(reader)
        if shown is None:
            sent = b""
        elif loop is not None:
            sent = await loop.run_in_executor(model, run_with, clock, scan.events, [shown])
        else:
            sent = scan.events([shown])
        blocked = scan.verdict()
        if blocked is not None:
            return b"".join(out), blocked  # nothing of the event that was blocked
        if sent:
            out.append(sent)
        if cut is not None:
            break
    return b"".join(out), cut


class StreamGuard:
    """Decides whether a relayed stream must be cut: budget crossed or run halted."""

    __slots__ = ("_budget", "_call", "_check_every", "_headroom", "_n", "_note")

    def __init__(
        self, call: Call, budget: Budget, note: Callable[[Call, str, HaltgateError], None]
    ) -> None:
        self._note = note
        """``refuse_or_note`` of the pipeline (monitor mode)."""
        self._call = call
        self._budget = budget
        self._n = 0
        self._check_every = 16
        self._headroom = _token_headroom(call)

    def check(self, reader: UsageReader) -> HaltgateError | None:
        # Output beyond the reservation is allowed only while the token budget has room
        # for it: a client without max_tokens can otherwise run past the budget mid-stream.
        extra = reader.streamed_output_estimate - self._call.max_output_tokens
        if extra > 0 and self._headroom is not None and extra > self._headroom:
            return self._cut(
                DeniedError(
                    "the stream crossed the token budget",
                    code="tokens_exhausted",
                    failure_type=FailureType.EXHAUSTION,
                )
            )
        self._n += 1
        if self._n % self._check_every == 0:
            verdict = self._budget.halted(time.time())
            if not verdict.allowed:
                return self._cut(budget_denial(verdict))
        return None

    def _cut(self, err: HaltgateError) -> HaltgateError | None:
        """The stream must be cut with ``err``; in monitor mode it is noted once and the
        stream goes on (``None``)."""
        call = self._call
        if not call.controls.monitor or err.failure_type is FailureType.EXTERNAL:
            return err
        self._headroom = None  # noted once: the stream is not cut, nor checked again
        self._check_every = 1 << 62
        self._note(call, "budget", err)
        return None


def _token_headroom(call: Call) -> int | None:
    """Tokens left beyond this call's reservation (``None``: no token budget)."""
    budget = call.reservation.budget if call.reservation else None
    if not budget:
        return None
    room: int | None = None
    for key in ("tokens", "output_tokens"):
        dim = budget.get(key)
        if dim is None or dim.get("limit") is None:
            continue
        left = int(dim["limit"] - dim.get("used", 0) - dim.get("reserved", 0))
        room = left if room is None else min(room, left)
    return room


def event_too_large(limit: int) -> UpstreamError:
    return UpstreamError(
        f"the upstream sent an SSE event larger than {limit} bytes (or never ended one)",
        code="sse_event_too_large",
    )
