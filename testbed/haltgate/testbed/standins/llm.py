"""Stand-in LLM API: OpenAI-compatible and Anthropic endpoints, with SSE streaming.

Deterministic: the same request body gives the same response bytes. The answer is
``n`` words ``tok0 tok1 ...`` where ``n`` is the request's output cap (``max_tokens``,
``max_completion_tokens``, ``max_output_tokens``; default :data:`DEFAULT_OUTPUT_TOKENS`).
Usage: input tokens = number of whitespace-separated words of all prompt text (at least
1), output tokens = ``n`` (+ reasoning tokens). Headers ``x-standin-cached``,
``x-standin-reasoning`` and ``x-standin-cache-write`` add cached input, reasoning and
cache-write token counts to the usage; ``x-standin-tokens`` sets ``n`` for requests without
an output cap (a long answer the client did not bound); ``x-standin-text`` makes the
answer that text (its words are the output tokens).

Routes (each also without the ``/v1`` prefix):
``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/responses``
(OpenAI), ``/v1/messages`` (Anthropic).

``x-standin-behavior``: ``error`` (HTTP 500 JSON error), ``truncate`` (stream cut after
two content chunks, no usage, no end marker), ``slow`` (sleep 0.3 s before answering),
``no-usage`` (stream without a usage chunk even when asked), ``burst`` (the whole stream
in one write, unpaced: many events reach the reader in one read).

Streams behave like OpenAI's: with ``stream_options.include_usage`` every chunk carries
``"usage":null`` and a last chunk with empty ``choices`` carries the usage; without it,
neither. Response ids do not depend on ``stream_options`` (a stream asked with and without
usage has the same ids, so the two can be compared byte for byte).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
from aiohttp import web

from haltgate.testbed.standins._common import (
    behavior,
    cut_connection,
    json_response,
    recording_app,
    run_cli,
    sse_event,
    start_sse,
)

DEFAULT_OUTPUT_TOKENS = 8
MAX_OUTPUT_TOKENS = 4096
CREATED = 1_700_000_000
EMBEDDING_DIM = 8


# ------------------------------------------------------------------ request reading


def _text_of(content: Any) -> str:
    """Prompt text of an OpenAI/Anthropic content value (string or list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                for key in ("text", "input_text", "content"):
                    if isinstance(part.get(key), str | list):
                        parts.append(_text_of(part[key]))
                        break
        return " ".join(parts)
    return ""


def count_words(text: str) -> int:
    return len(text.split())


def input_tokens(body: dict[str, Any]) -> int:
    """Deterministic input token count of a request body (every endpoint)."""
    texts: list[str] = []
    for msg in body.get("messages") or []:
        if isinstance(msg, dict):
            texts.append(_text_of(msg.get("content")))
    for key in ("system", "prompt", "input", "instructions"):
        value = body.get(key)
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            for item in value:
                texts.append(
                    _text_of(item.get("content")) if isinstance(item, dict) else _text_of([item])
                )
    return max(1, sum(count_words(t) for t in texts))


def output_tokens(body: dict[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value > 0:
            return min(value, MAX_OUTPUT_TOKENS)
    return DEFAULT_OUTPUT_TOKENS


def _header_int(request: web.Request, name: str) -> int:
    try:
        return max(0, int(request.headers.get(name, "0")))
    except ValueError:
        return 0


def _ident(prefix: str, body: dict[str, Any]) -> str:
    stable = {k: v for k, v in body.items() if k != "stream_options"}
    return (
        prefix + hashlib.sha256(orjson.dumps(stable, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]
    )


def _wants_usage(call: _Call) -> bool:
    options = call.body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


class _Writer:
    """Writes a stream's events: one write each, or all in one write (``burst``)."""

    def __init__(self, resp: web.StreamResponse, call: _Call) -> None:
        self.resp = resp
        self._burst = call.behavior == "burst"
        self._held: list[bytes] = []

    async def write(self, data: bytes) -> None:
        if self._burst:
            self._held.append(data)
        else:
            await self.resp.write(data)

    async def flush(self) -> None:
        if self._held:
            await self.resp.write(b"".join(self._held))
            self._held.clear()

    async def end(self) -> None:
        await self.flush()
        await self.resp.write_eof()


class _Call:
    """What every endpoint needs from a request."""

    def __init__(self, request: web.Request, raw: bytes, body: dict[str, Any]) -> None:
        self.body = body
        self.model = str(body.get("model") or "standin-model")
        self.stream = body.get("stream") is True
        self.n = output_tokens(body)
        if not any(
            isinstance(body.get(k), int)
            for k in ("max_completion_tokens", "max_tokens", "max_output_tokens")
        ):
            self.n = min(_header_int(request, "x-standin-tokens") or self.n, MAX_OUTPUT_TOKENS)
        self.input = input_tokens(body)
        self.cached = min(_header_int(request, "x-standin-cached"), self.input)
        self.reasoning = _header_int(request, "x-standin-reasoning")
        self.cache_write = _header_int(request, "x-standin-cache-write")
        self.words = [f"tok{i}" for i in range(self.n)]
        scripted = request.headers.get("x-standin-text")
        if scripted:
            self.words = scripted.split()
            self.n = len(self.words)
        self.text = " ".join(self.words)
        self.raw = raw
        self.behavior = behavior(request)

    @property
    def completion_tokens(self) -> int:
        return self.n + self.reasoning


async def _read(request: web.Request) -> tuple[bytes, dict[str, Any]] | web.Response:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _error(400, "invalid_request_error", "body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "invalid_request_error", "body must be a JSON object")
    return raw, body


def _error(status: int, type_: str, message: str) -> web.Response:
    return json_response({"error": {"type": type_, "message": message}}, status=status)


async def _prelude(request: web.Request) -> _Call | web.Response:
    read = await _read(request)
    if isinstance(read, web.Response):
        return read
    call = _Call(request, *read)
    if call.behavior == "error":
        return _error(500, "server_error", "stand-in upstream failure")
    if call.behavior == "slow":
        await asyncio.sleep(0.3)
    return call


# ------------------------------------------------------------------ OpenAI


def _openai_usage(call: _Call) -> dict[str, Any]:
    return {
        "prompt_tokens": call.input,
        "completion_tokens": call.completion_tokens,
        "total_tokens": call.input + call.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": call.cached},
        "completion_tokens_details": {"reasoning_tokens": call.reasoning},
    }


def _openai_object(
    ident: str, obj: str, call: _Call, choices: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """An OpenAI response object or stream chunk: id, type, model and ``choices``."""
    return {
        "id": ident,
        "object": obj,
        "created": CREATED,
        "model": call.model,
        "choices": choices,
        **extra,
    }


async def chat_completions(request: web.Request) -> web.StreamResponse:
    call = await _prelude(request)
    if isinstance(call, web.Response):
        return call
    ident = _ident("chatcmpl-", call.body)
    if not call.stream:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": call.text},
            "finish_reason": "stop",
        }
        return json_response(
            _openai_object(ident, "chat.completion", call, [choice], usage=_openai_usage(call))
        )

    usage_null = {"usage": None} if _wants_usage(call) else {}

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse_event(
            _openai_object(ident, "chat.completion.chunk", call, [choice], **usage_null)
        )

    out = _Writer(await start_sse(request), call)
    await out.write(chunk({"role": "assistant", "content": ""}, None))
    for i, word in enumerate(call.words):
        if call.behavior == "truncate" and i == 2:
            await out.flush()
            cut_connection(request)
            return out.resp
        await out.write(chunk({"content": word if i == 0 else " " + word}, None))
    await out.write(chunk({}, "stop"))
    await _openai_stream_tail(out, call, ident, "chat.completion.chunk")
    return out.resp


async def _openai_stream_tail(out: _Writer, call: _Call, ident: str, obj: str) -> None:
    if _wants_usage(call) and call.behavior != "no-usage":
        await out.write(sse_event(_openai_object(ident, obj, call, [], usage=_openai_usage(call))))
    await out.write(sse_event("[DONE]"))
    await out.end()


async def completions(request: web.Request) -> web.StreamResponse:
    call = await _prelude(request)
    if isinstance(call, web.Response):
        return call
    ident = _ident("cmpl-", call.body)
    if not call.stream:
        choice = {"index": 0, "text": call.text, "logprobs": None, "finish_reason": "stop"}
        return json_response(
            _openai_object(ident, "text_completion", call, [choice], usage=_openai_usage(call))
        )
    usage_null = {"usage": None} if _wants_usage(call) else {}
    out = _Writer(await start_sse(request), call)
    for i, word in enumerate(call.words):
        if call.behavior == "truncate" and i == 2:
            await out.flush()
            cut_connection(request)
            return out.resp
        choice = {
            "index": 0,
            "text": word if i == 0 else " " + word,
            "logprobs": None,
            "finish_reason": "stop" if i == call.n - 1 else None,
        }
        await out.write(
            sse_event(_openai_object(ident, "text_completion", call, [choice], **usage_null))
        )
    await _openai_stream_tail(out, call, ident, "text_completion")
    return out.resp


async def embeddings(request: web.Request) -> web.StreamResponse:
    call = await _prelude(request)
    if isinstance(call, web.Response):
        return call
    inputs = call.body.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    data = []
    for index, item in enumerate(items):
        digest = hashlib.sha256(orjson.dumps(item)).digest()
        vector = [round(b / 255.0, 4) for b in digest[:EMBEDDING_DIM]]
        data.append({"object": "embedding", "index": index, "embedding": vector})
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": call.model,
            "usage": {"prompt_tokens": call.input, "total_tokens": call.input},
        }
    )


def _responses_usage(call: _Call) -> dict[str, Any]:
    return {
        "input_tokens": call.input,
        "input_tokens_details": {"cached_tokens": call.cached},
        "output_tokens": call.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": call.reasoning},
        "total_tokens": call.input + call.completion_tokens,
    }


async def responses(request: web.Request) -> web.StreamResponse:
    call = await _prelude(request)
    if isinstance(call, web.Response):
        return call
    ident = _ident("resp_", call.body)
    message = {
        "type": "message",
        "id": _ident("msg_", call.body),
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": call.text, "annotations": []}],
    }
    full = {
        "id": ident,
        "object": "response",
        "created_at": CREATED,
        "status": "completed",
        "model": call.model,
        "output": [message],
        "usage": _responses_usage(call),
    }
    if not call.stream:
        return json_response(full)
    resp = await start_sse(request)
    created = {**full, "status": "in_progress", "output": [], "usage": None}
    await resp.write(
        sse_event(
            {"type": "response.created", "sequence_number": 0, "response": created},
            "response.created",
        )
    )
    seq = 1
    for i, word in enumerate(call.words):
        if call.behavior == "truncate" and i == 2:
            cut_connection(request)
            return resp
        await resp.write(
            sse_event(
                {
                    "type": "response.output_text.delta",
                    "sequence_number": seq,
                    "item_id": message["id"],
                    "output_index": 0,
                    "content_index": 0,
                    "delta": word if i == 0 else " " + word,
                },
                "response.output_text.delta",
            )
        )
        seq += 1
    if call.behavior == "no-usage":
        full = {**full, "usage": None}
    await resp.write(
        sse_event(
            {"type": "response.completed", "sequence_number": seq, "response": full},
            "response.completed",
        )
    )
    await resp.write_eof()
    return resp


# ------------------------------------------------------------------ Anthropic


async def messages(request: web.Request) -> web.StreamResponse:
    call = await _prelude(request)
    if isinstance(call, web.Response):
        return call
    ident = _ident("msg_", call.body)
    usage = {
        "input_tokens": call.input - call.cached,
        "cache_read_input_tokens": call.cached,
        "cache_creation_input_tokens": call.cache_write,
        "output_tokens": call.completion_tokens,
    }
    if not call.stream:
        return json_response(
            {
                "id": ident,
                "type": "message",
                "role": "assistant",
                "model": call.model,
                "content": [{"type": "text", "text": call.text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": usage,
            }
        )
    resp = await start_sse(request)
    start_usage = {**usage, "output_tokens": 1}
    await resp.write(
        sse_event(
            {
                "type": "message_start",
                "message": {
                    "id": ident,
                    "type": "message",
                    "role": "assistant",
                    "model": call.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
            "message_start",
        )
    )
    await resp.write(
        sse_event(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        )
    )
    await resp.write(sse_event({"type": "ping"}, "ping"))
    for i, word in enumerate(call.words):
        if call.behavior == "truncate" and i == 2:
            cut_connection(request)
            return resp
        await resp.write(
            sse_event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": word if i == 0 else " " + word},
                },
                "content_block_delta",
            )
        )
    await resp.write(sse_event({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    final_usage = {"output_tokens": call.completion_tokens} if call.behavior != "no-usage" else {}
    await resp.write(
        sse_event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": final_usage,
            },
            "message_delta",
        )
    )
    await resp.write(sse_event({"type": "message_stop"}, "message_stop"))
    await resp.write_eof()
    return resp


async def models(request: web.Request) -> web.Response:
    return json_response(
        {
            "object": "list",
            "data": [
                {
                    "id": "standin-model",
                    "object": "model",
                    "created": CREATED,
                    "owned_by": "standin",
                }
            ],
        }
    )


def create_app(*, record: bool = True) -> web.Application:
    """The stand-in LLM application (``record=False`` for benchmarks)."""
    app = recording_app(record=record)
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/chat/completions", chat_completions)
        app.router.add_post(f"{prefix}/completions", completions)
        app.router.add_post(f"{prefix}/embeddings", embeddings)
        app.router.add_post(f"{prefix}/responses", responses)
        app.router.add_post(f"{prefix}/messages", messages)
        app.router.add_get(f"{prefix}/models", models)
    return app


if __name__ == "__main__":
    run_cli("llm", create_app)
