"""Relaying a non-streamed answer: passed through chunk by chunk (HTTP tools without
response guardrails) or read whole, settled, filtered and scanned, then sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from typing import Any, Final

import orjson
from aiohttp import web

from haltgate.governance.errors import DeniedError, HaltgateError, UpstreamError
from haltgate.governance.policy_base import RequestKind
from haltgate.sidecar import mcp, mcp_answers
from haltgate.sidecar import responses as r
from haltgate.sidecar.bodybudget import MemoryBudgetError
from haltgate.sidecar.call import Call, overhead_ms
from haltgate.sidecar.pipeline_request import PipelineRequest, start_answer
from haltgate.sidecar.relay_headers import forward_headers, response_headers
from haltgate.sidecar.response_guard import ResponseGuard, lists_tools, rewrite_sse
from haltgate.sidecar.upstream_response import UpstreamResponse

__all__ = ["AnswerRelay", "scans_answers"]

MCP_SESSION_HEADER: Final = "Mcp-Session-Id"


class AnswerRelay(ResponseGuard):
    """Relays whole (non-SSE) answers."""

    def answer_server(
        self,
        request: PipelineRequest,
        call: Call,
        upstream: UpstreamResponse,
        requests: Sequence[tuple[Any, str]],
    ) -> None:
        """Send the MCP server the refusal of the requests it sent that were dropped
        (in the background: the agent's answer does not wait for it)."""
        if not requests or call.target is None:
            return
        # Audited with the call whose answer carried them (its outcome record).
        call.findings.extend(
            {"detector": "mcp", "action": "server_request_refused", "type": method}
            for _, method in requests
        )
        headers = forward_headers(request.headers, call)
        session = upstream.headers.get(MCP_SESSION_HEADER)
        if session is not None and MCP_SESSION_HEADER not in headers:
            headers[MCP_SESSION_HEADER] = session
        task = asyncio.create_task(
            mcp_answers.answer_server(
                self.upstream_client, call.target.url, headers, list(requests), call.decision_id
            )
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def relay_through(
        self, request: PipelineRequest, call: Call, upstream: UpstreamResponse
    ) -> web.StreamResponse:
        """Relay an answer chunk by chunk without reading it (HTTP tools)."""
        resp = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=response_headers(upstream.headers, call, None),
        )
        if upstream.content_length is not None:
            resp.content_length = upstream.content_length
        resp.headers[r.OVERHEAD_HEADER] = overhead_ms(call)
        await start_answer(resp, request)
        digest = hashlib.blake2b(digest_size=16)
        truncated = client_gone = False
        try:
            async for chunk in upstream:
                digest.update(chunk)
                try:
                    await resp.write(chunk)
                except (ConnectionError, RuntimeError):
                    client_gone = True
                    break
        except (TimeoutError, OSError):
            truncated = True
        if not client_gone:
            try:
                if truncated:
                    # The status line is out: closing without the rest is all that is left.
                    resp.force_close()
                else:
                    await resp.write_eof()
            except (ConnectionError, RuntimeError):
                pass
        ok = upstream.status < 500 and not truncated
        self.settle_budget(
            call, None, ok, None if ok else f"http_{upstream.status}", digest.hexdigest()
        )
        self._finish(call, "allow", None)
        self._audit_outcome(call, upstream.status, None, decision="allow")
        return resp

    async def relay_whole(
        self, request: PipelineRequest, call: Call, upstream: UpstreamResponse
    ) -> web.StreamResponse:
        """A complete (non-streamed) answer: settle, scan, then send it."""
        limit = self.settings.max_buffered_response_bytes
        known = upstream.content_length
        if known is not None and known > limit:
            return await self.fail_upstream(
                request,
                call,
                UpstreamError(
                    f"the upstream answer exceeds {limit} bytes", code="upstream_response_too_large"
                ),
                None,
            )
        try:
            if known is not None:
                self._hold(call, known, "response")
            chunks: list[bytes] = []
            size = 0
            while chunk := await upstream.readany():
                size += len(chunk)
                if size > limit:
                    return await self.fail_upstream(
                        request,
                        call,
                        UpstreamError(
                            f"the upstream answer exceeds {limit} bytes",
                            code="upstream_response_too_large",
                        ),
                        None,
                    )
                if known is None or size > known:
                    self._hold(call, len(chunk), "response")
                chunks.append(chunk)
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except (TimeoutError, OSError) as e:
            return await self.fail_upstream(
                request,
                call,
                UpstreamError("the upstream answer ended early", code="upstream_truncated"),
                e,
            )
        except MemoryBudgetError as e:
            # The call went out (its reservation is settled as failed): the answer cannot
            # be held now, so the agent gets a typed 503 rather than the sidecar the OOM.
            return await self.fail_upstream(request, call, e, None)
        call.upstream_done = time.perf_counter()
        classified = call.classified
        assert classified is not None
        counts, content_fp = self.read_usage(call, upstream.status, body=body)
        ok, err_fp = _outcome_of(call, upstream.status, body)
        if call.mcp is not None and call.mcp.sub_ids:
            mcp.read_outcomes(call.mcp, body)
        settle = self.settle_budget(call, counts, ok, err_fp, content_fp or _digest(body))
        if classified.view.kind is RequestKind.MCP and lists_tools(classified.body):
            body = self.filter_tools_list(call, upstream, body)
        if classified.mcp is not None and upstream.status < 300:
            body = mcp_answers.filter_listings(call, body, upstream.content_type, rewrite_sse)
        try:
            if classified.mcp is not None:
                body = mcp_answers.filter_answer(
                    call,
                    body,
                    upstream.content_type,
                    lambda dropped: self.answer_server(request, call, upstream, dropped),
                )
            if call.flow_value_rules:
                await self.record_flow_values(call, body, upstream.headers)
            plain: bytes | None = None
            new = header_values = None
            if scans_answers(call):  # else the scan stages have nothing to do
                # Decoded here on the loop (its bytes charged to the memory budget), scanned
                # where the guardrails run.
                plain = self.decode_response(call, body, upstream.headers)
                if plain is not None:
                    new = await self._scan(
                        call, self.scan_response, call, plain, upstream.headers.get("Content-Type")
                    )
                # The headers' values the agent receives (blocked or redacted like the body).
                header_values = await self._scan(call, self.scan_answer_headers, call, upstream)
        except HaltgateError as err:
            decision = "deny" if isinstance(err, DeniedError) else "error"
            self._finish(call, decision, err.code)
            self._audit_outcome(call, upstream.status, counts, decision=decision, err=err)
            return await self._send_error(request, call, err)
        resp = web.Response(
            status=upstream.status,
            reason=upstream.reason,
            body=body if new is None else new,
            headers=response_headers(upstream.headers, call, settle, header_values),
        )
        if new is not None and plain is not body:
            resp.headers.popall("Content-Encoding", None)  # sent decoded once redacted
        resp.headers[r.OVERHEAD_HEADER] = overhead_ms(call)
        self._finish(call, "allow", None)
        self._audit_outcome(call, upstream.status, counts, decision="allow")
        return resp


def scans_answers(call: Call) -> bool:
    """Whether the call's policy runs response guardrails (else the answer's scan stages
    have nothing to do: they are not entered, no coroutine made for them)."""
    guardrails = call.controls.guardrails
    return guardrails is not None and guardrails.active("response")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _outcome_of(call: Call, status: int, body: bytes) -> tuple[bool, str | None]:
    """Whether the call succeeded, and a digest of its error if not (stagnation)."""
    if status >= 500:
        return False, f"http_{status}"
    c = call.classified
    if c is not None and c.view.tool_calls and status < 300:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return True, None
        for msg in obj if isinstance(obj, list) else [obj]:
            if not isinstance(msg, dict):
                continue
            result = msg.get("result")
            if "error" in msg or (isinstance(result, dict) and result.get("isError") is True):
                return False, _digest(
                    orjson.dumps(msg.get("error") or result, option=orjson.OPT_SORT_KEYS)
                )
    return True, None
