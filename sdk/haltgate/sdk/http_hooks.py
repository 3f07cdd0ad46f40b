"""HTTP client hooks shared by the OpenAI-based integrations (LangChain, AutoGen).

OpenAI's SDK retries 409, 429 and 5xx answers by itself (twice by default), and it asks
the server first: ``x-should-retry: false`` stops it. haltgate's refusals (429 EXHAUSTION,
409 STAGNATION, 403, 423) are decisions, not congestion: a retry would get the same answer
and only add load and audit noise. The response hook here marks every answer that carries
``x-haltgate-failure-type`` as not retryable, so a halt reaches the agent at once, while a
genuine upstream 5xx or a network error is still retried as the SDK's settings say.

Streams: when the sidecar cuts a stream (budget, halt, guardrail) it may be in the middle
of relaying an event; it ends that fragment with a blank line and sends a final
``event: error`` carrying the typed error. SSE clients that parse every ``data:`` as JSON
(OpenAI's SDK does) fail on the fragment and never see the error event. For answers of
the sidecar (``x-haltgate-decision-id``) with ``text/event-stream``, the hook re-frames the
stream event by event and drops a data event whose JSON is incomplete, so the client reads
the typed error that follows.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from haltgate.sdk.wire import DECISION_HEADER, FAILURE_HEADER

__all__ = [
    "FAILURE_HEADER",
    "SSEReframer",
    "async_no_retry_hook",
    "no_retry_hook",
    "openai_http_clients",
]

MAX_EVENT_BYTES = 16 * 1024 * 1024
"""An event longer than this is passed on unchecked (bounded buffering)."""


class SSEReframer:
    """Splits an SSE byte stream into whole events; drops data events cut mid-JSON."""

    def __init__(self) -> None:
        self._buf = b""

    @staticmethod
    def _keep(event: bytes) -> bool:
        data = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
        if not data or any(line.startswith(b"event:") for line in event.split(b"\n")):
            return True
        joined = b"\n".join(data)
        if joined.strip() == b"[DONE]" or not joined.lstrip().startswith((b"{", b"[")):
            return True
        try:
            json.loads(joined)
        except (ValueError, UnicodeDecodeError):
            return False  # the fragment of an event the sidecar cut
        return True

    def feed(self, chunk: bytes) -> bytes:
        """Whole events of the stream so far (in order), minus cut fragments."""
        self._buf += chunk.replace(b"\r\n", b"\n")
        out = []
        while True:
            end = self._buf.find(b"\n\n")
            if end < 0:
                if len(self._buf) > MAX_EVENT_BYTES:
                    out.append(self._buf)
                    self._buf = b""
                break
            event, self._buf = self._buf[: end + 2], self._buf[end + 2 :]
            if self._keep(event[:-2]):
                out.append(event)
        return b"".join(out)

    def close(self) -> bytes:
        """What is left at the end of the stream (an unterminated tail)."""
        tail, self._buf = self._buf, b""
        return tail


def _httpx_module(response: Any) -> Any:
    # The OpenAI SDK builds on httpx (or its successor httpx2): use the one it uses.
    return importlib.import_module(type(response).__module__.split(".")[0])


def _is_haltgate_stream(response: Any) -> bool:
    return DECISION_HEADER in response.headers and response.headers.get(
        "content-type", ""
    ).startswith("text/event-stream")


def no_retry_hook(response: Any) -> None:
    """httpx response hook: haltgate refusals are not retried; cut streams re-framed."""
    _mark(response)


def _mark(response: Any) -> None:
    if FAILURE_HEADER in response.headers:
        response.headers["x-should-retry"] = "false"
    if _is_haltgate_stream(response):
        inner = response.stream
        base = _httpx_module(response).SyncByteStream

        class Reframed(base):  # type: ignore[misc,valid-type]
            def __iter__(self) -> Iterator[bytes]:
                framer = SSEReframer()
                for chunk in inner:
                    out = framer.feed(chunk)
                    if out:
                        yield out
                tail = framer.close()
                if tail:
                    yield tail

            def close(self) -> None:
                inner.close()

        response.stream = Reframed()


async def async_no_retry_hook(response: Any) -> None:
    """The same hook for async httpx clients."""
    if FAILURE_HEADER in response.headers:
        response.headers["x-should-retry"] = "false"
    if _is_haltgate_stream(response):
        inner = response.stream
        base = _httpx_module(response).AsyncByteStream

        class Reframed(base):  # type: ignore[misc,valid-type]
            async def __aiter__(self) -> AsyncIterator[bytes]:
                framer = SSEReframer()
                async for chunk in inner:
                    out = framer.feed(chunk)
                    if out:
                        yield out
                tail = framer.close()
                if tail:
                    yield tail

            async def aclose(self) -> None:
                await inner.aclose()

        response.stream = Reframed()


HeadersCallback = Callable[[Mapping[str, str]], None]


def openai_http_clients(on_headers: HeadersCallback | None = None) -> tuple[Any, Any]:
    """``(sync, async)`` HTTP clients for an OpenAI SDK client, with the no-retry hook.

    ``on_headers`` is called with the headers of every answer of the sidecar (those with
    ``x-haltgate-decision-id``), e.g. to read budget warnings where the framework does not
    expose response headers. Built with the OpenAI SDK's own client classes, so they match
    the httpx flavour the installed ``openai`` uses, with its default timeouts and limits.
    """
    import openai

    def observe(response: Any) -> None:
        if on_headers is not None and DECISION_HEADER in response.headers:
            on_headers(response.headers)

    async def aobserve(response: Any) -> None:
        observe(response)

    sync = openai.DefaultHttpxClient(event_hooks={"response": [no_retry_hook, observe]})
    async_ = openai.DefaultAsyncHttpxClient(
        event_hooks={"response": [async_no_retry_hook, aobserve]}
    )
    return sync, async_
