"""What the agent may see of an answer: response guardrails on the decoded body, what
cannot be scanned (by ``failMode``), and ``tools/list`` answers without the denied tools.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from multidict import MultiMapping

from haltgate.governance.errors import DeniedError, HaltgateError, UnavailableError
from haltgate.governance.guardrails.answer_headers import HeadersTooLarge, scan_headers
from haltgate.governance.guardrails.answer_json import (
    NOT_PARSED,
    dump_answer_json,
    parse_answer_json,
)
from haltgate.governance.guardrails.response_body import (
    Unscannable,
    decode_content,
    scan_decoded_body,
)
from haltgate.governance.policy_base import FailMode, FailureType
from haltgate.sidecar.call import Call
from haltgate.sidecar.relay_headers import EVENT_STREAM, relayed_items
from haltgate.sidecar.request_stages import RequestStages
from haltgate.sidecar.sse import SSEParser
from haltgate.sidecar.upstream_response import UpstreamResponse

__all__ = ["ResponseGuard", "content_coding", "lists_tools", "rewrite_sse"]


class ResponseGuard(RequestStages):
    """Scans and filters answers before they are relayed."""

    def decode_response(self, call: Call, body: bytes, headers: Mapping[str, str]) -> bytes | None:
        """The answer without its content codings, for the response guardrails (``None``:
        nothing to scan, or unscannable and passed under ``failMode: open``). The decoded
        bytes are held against the body memory budget (503 past it)."""
        guardrails = call.controls.guardrails
        if guardrails is None or not body or not guardrails.active("response"):
            return None
        if isinstance(headers, MultiMapping) and len(_distinct(headers, "Content-Type")) > 1:
            # aiohttp reads the first, requests the values joined (its charset from the
            # last): no one reading to scan.
            self._unscannable(call, Unscannable("type", "conflicting Content-Type headers"))
            return None
        coding = content_coding(headers)
        if not coding or coding.strip().lower() == "identity":
            return body
        try:
            plain = decode_content(body, coding, self.settings.max_decoded_response_bytes)
        except Unscannable as e:
            self._unscannable(call, e)
            return None
        self._hold(call, len(plain), "response")
        return plain

    def scan_response(self, call: Call, body: bytes, content_type: str | None) -> bytes | None:
        """Guardrails on what comes back, decoded (a blocked answer is replaced by a
        refusal). Returns the redacted body, ``None`` when nothing changed. Any text type
        is scanned (see response_body); what cannot be scanned follows ``failMode``."""
        guardrails = call.controls.guardrails
        assert guardrails is not None  # decode_response returned a body to scan
        try:
            scanned = scan_decoded_body(guardrails, body, content_type, channel=call.answer_channel)
        except Unscannable as e:
            self._unscannable(call, e)
            return None
        except Exception as e:
            if call.controls.spec.guardrails.fail_mode is FailMode.OPEN:
                self._guardrail_fail_open(call, [f"response:{type(e).__name__}"])
                return None
            self.refuse_or_note(
                call,
                "response",
                UnavailableError(f"guardrails failed: {e}", code="guardrails_error"),
            )
            return None
        result = scanned.result
        call.findings.extend(f.to_dict() for f in result.findings)
        if result.errors and not result.blocked:
            self._guardrail_fail_open(call, result.errors)
        if result.risk:
            self.budget.add_risk(time.time(), result.risk, result.code or "guardrail_finding")
        if result.blocked:
            self.refuse_or_note(
                call,
                "response",
                DeniedError(
                    "a guardrail blocked the response",
                    code=result.code or "guardrail_blocked",
                    failure_type=FailureType.SAFETY,
                ),
            )
        if call.controls.monitor:
            return None  # monitor mode: the answer goes as it came (findings say the rest)
        return None if scanned.body is body else scanned.body

    def scan_answer_headers(self, call: Call, upstream: UpstreamResponse) -> dict[int, str] | None:
        """The response guardrails on the values of the headers the agent receives (see
        answer_headers), as ``document`` text: a block refuses the answer (raises, as for
        the body), findings are audited with ``path`` ``header:<name>``. Returns the
        redacted values by position in ``relayed_items`` (``None``: none changed)."""
        guardrails = call.controls.guardrails
        if guardrails is None or not guardrails.active("response"):
            return None
        try:
            scanned = scan_headers(guardrails, relayed_items(upstream.headers))
        except HeadersTooLarge as e:
            self._unscannable(call, Unscannable("headers", str(e)))
            return None
        if not scanned.findings and not scanned.errors:
            return None  # the common case
        call.findings.extend(f.to_dict() for f in scanned.findings)
        if scanned.errors and not scanned.blocked:
            self._guardrail_fail_open(call, list(scanned.errors))
        if scanned.risk:
            self.budget.add_risk(time.time(), scanned.risk, scanned.code or "guardrail_finding")
        if scanned.blocked:
            self.refuse_or_note(
                call,
                "response",
                DeniedError(
                    "a guardrail blocked the response (a header)",
                    code=scanned.code or "guardrail_blocked",
                    failure_type=FailureType.SAFETY,
                ),
            )
        if call.controls.monitor:
            return None  # monitor mode: the headers go as they came
        return scanned.redacted

    def _stream_unscannable(self, call: Call, err: Unscannable) -> HaltgateError | None:
        """`_unscannable` in the middle of a stream: the error that cuts it (closed)."""
        try:
            self._unscannable(call, err)
        except HaltgateError as refusal:
            return refusal
        return None

    def _unscannable(self, call: Call, err: Unscannable) -> None:
        """An answer the guardrails cannot read: refused (closed) or passed, counted and
        audited as a fail-open event (open)."""
        closed = call.controls.spec.guardrails.fail_mode is not FailMode.OPEN
        self._child(
            self.metrics.guardrail_unscanned, err.reason, "refused" if closed else "passed"
        ).inc()
        if closed:
            self.refuse_or_note(
                call,
                "response",
                UnavailableError(
                    f"the answer cannot be scanned by the guardrails ({err})",
                    code="guardrails_unscannable",
                ),
            )
            return
        self.metrics.fail_open.labels("guardrails").inc()
        call.findings.append(
            {"detector": "response_body", "action": "fail_open", "error": err.reason}
        )

    def filter_tools_list(self, call: Call, upstream: UpstreamResponse, body: bytes) -> bytes:
        """Hide the tools the agent may not call from ``tools/list`` answers."""
        classified = call.classified
        assert classified is not None
        server = classified.view.upstream or classified.view.host
        authorizer = call.controls.authorizer
        view = classified.view

        def rewrite(message: Any) -> Any:
            if isinstance(message, dict) and isinstance(message.get("result"), dict):
                tools = message["result"].get("tools")
                if isinstance(tools, list):
                    message["result"]["tools"] = authorizer.filter_tools_list(server, tools, view)
            return message

        if upstream.content_type == EVENT_STREAM:
            return rewrite_sse(body, rewrite)
        obj = parse_answer_json(body)  # as the MCP SDKs parse it (NaN, a BOM...)
        if obj is NOT_PARSED:
            return body
        obj = [rewrite(m) for m in obj] if isinstance(obj, list) else rewrite(obj)
        return dump_answer_json(obj)


def content_coding(headers: Mapping[str, str]) -> str:
    """Every ``Content-Encoding`` of an answer, joined in order: a client (httpx, curl)
    undoes them all when the header is repeated, not only the first one's."""
    if isinstance(headers, MultiMapping):
        return ", ".join(v for v in headers.getall("Content-Encoding", ()) if v.strip())
    return headers.get("Content-Encoding", "")


def _distinct(headers: MultiMapping[str], name: str) -> set[str]:
    return {" ".join(v.lower().split()) for v in headers.getall(name, ())}


def lists_tools(body: Any) -> bool:
    if isinstance(body, dict):
        return body.get("method") == "tools/list"
    if isinstance(body, list):
        return any(isinstance(m, dict) and m.get("method") == "tools/list" for m in body)
    return False


def rewrite_sse(body: bytes, rewrite: Any) -> bytes:
    parser = SSEParser()
    out = []
    for event in parser.feed(body + b"\n\n"):
        message = parse_answer_json(event.data)
        if message is NOT_PARSED:
            out.append(f"event: {event.event}\ndata: {event.data}\n\n".encode())
            continue
        if isinstance(message, list):
            message = [rewrite(m) for m in message]
        else:
            message = rewrite(message)
        out.append(
            b"event: " + event.event.encode() + b"\ndata: " + dump_answer_json(message) + b"\n\n"
        )
    return b"".join(out)
