"""Guardrails for streamed chat answers (server-sent events), provider-aware.

`ChatStreamGuard.on_event(event)` takes one parsed SSE ``data:`` JSON object of an OpenAI
Chat Completions stream, an OpenAI Responses stream or an Anthropic Messages stream, and
returns the events to send instead (zero, one or two), with their text redacted. Text is
scanned by a `StreamScanner` per choice / content block, so an entity or an attack phrase
split across events is seen whole: text is held back (up to `holdback` characters) and
released in later events; at the end of a block the rest is flushed (for Anthropic and the
Responses API as one extra delta event before the block's end event). Every returned event
is a JSON object of the same shape as the provider's, so clients keep parsing. Once a
blocking finding is released, `blocked` is True and no further event is returned: the
caller ends the stream with its own error event.

Tool-call argument deltas are passed through unscanned (their JSON is only complete at the
end; scan it then with `Guardrails.scan_json`).
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from haltgate.governance.guardrails.base import Channel, Finding, ScanDirection
from haltgate.governance.guardrails.engine import Guardrails
from haltgate.governance.guardrails.stream_scanner import StreamChunk, StreamScanner


class ChatStreamGuard:
    """Redacts / blocks one streamed answer; create one per response stream."""

    def __init__(
        self,
        guardrails: Guardrails,
        direction: ScanDirection = "response",
        *,
        holdback: int = 256,
        channel: Channel = "request",
    ) -> None:
        """`holdback`: characters kept back per block so split entities are seen whole.
        `channel`: a model's answer is text the model writes for the agent (its tool-call
        arguments among it), judged as ``request`` text by default."""
        self._g = guardrails
        self._direction: ScanDirection = direction
        self._channel: Channel = channel
        self._holdback = holdback
        self._scanners: dict[tuple[Any, ...], StreamScanner] = {}
        self._released: dict[tuple[Any, ...], list[str]] = {}
        self.findings: list[Finding] = []
        self.risk = 0.0
        self.errors: list[str] = []
        self.blocked = False
        self._last_chat: dict[str, Any] | None = None

    def on_event(self, event: Any) -> list[Any]:
        """Events to send in place of `event` (unknown events pass unchanged)."""
        if self.blocked:
            return []
        if not isinstance(event, dict):
            return [event]
        if isinstance(event.get("choices"), list):
            out = [self._openai_chat(event)]
        else:
            kind = event.get("type")
            if kind == "content_block_delta":
                out = self._anthropic_delta(event)
            elif kind == "content_block_stop":
                out = self._flush(
                    ("block", _key_part(event.get("index"))), event, self._anthropic_text
                )
            elif kind == "response.output_text.delta":
                out = self._responses_delta(event)
            elif kind == "response.output_text.done":
                out = self._responses_done(event)
            else:
                out = [event]
        return [] if self.blocked else out

    # ------------------------------------------------------------------ providers

    def finish(self) -> list[Any]:
        """Events releasing what is still held at the end of the stream (OpenAI's
        ``[DONE]``) of choices that never sent a ``finish_reason``: without them that
        text would be lost. Empty once blocked."""
        if self.blocked or self._last_chat is None:
            return []
        out: list[Any] = []
        for key in list(self._scanners):
            if key[0] != "choice":
                continue
            rest = self._close(key)
            if rest:
                choice = {"index": key[1], "delta": {"content": rest}, "finish_reason": None}
                out.append({**self._last_chat, "choices": [choice]})
        return [] if self.blocked else out

    def _openai_chat(self, event: dict[str, Any]) -> dict[str, Any]:
        self._last_chat = event
        new = copy.copy(event)
        new["choices"] = []
        for choice in event["choices"]:
            if not isinstance(choice, dict):
                new["choices"].append(choice)
                continue
            key = ("choice", _key_part(choice.get("index", 0)))
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else None
            released = ""
            if isinstance(text, str):
                released = self._feed(key, text)
            if choice.get("finish_reason") is not None:
                released += self._close(key)
            if isinstance(text, str) or released:
                choice = copy.copy(choice)
                choice["delta"] = {
                    **(delta if isinstance(delta, dict) else {}),
                    "content": released,
                }
            new["choices"].append(choice)
        return new

    def _anthropic_delta(self, event: dict[str, Any]) -> list[Any]:
        delta = event.get("delta")
        if not isinstance(delta, dict) or delta.get("type") != "text_delta":
            return [event]
        text = delta.get("text")
        if not isinstance(text, str):
            return [event]
        released = self._feed(("block", _key_part(event.get("index"))), text)
        return [{**event, "delta": {**delta, "text": released}}]

    @staticmethod
    def _anthropic_text(end: dict[str, Any], text: str) -> dict[str, Any]:
        return {
            "type": "content_block_delta",
            "index": end.get("index"),
            "delta": {"type": "text_delta", "text": text},
        }

    @staticmethod
    def _responses_key(event: dict[str, Any]) -> tuple[Any, ...]:
        return (
            "output",
            _key_part(event.get("item_id")),
            _key_part(event.get("output_index")),
            _key_part(event.get("content_index")),
        )

    def _responses_delta(self, event: dict[str, Any]) -> list[Any]:
        text = event.get("delta")
        if not isinstance(text, str):
            return [event]
        return [{**event, "delta": self._feed(self._responses_key(event), text)}]

    def _responses_done(self, event: dict[str, Any]) -> list[Any]:
        key = self._responses_key(event)

        def delta(end: dict[str, Any], text: str) -> dict[str, Any]:
            return {
                "type": "response.output_text.delta",
                "item_id": end.get("item_id"),
                "output_index": end.get("output_index"),
                "content_index": end.get("content_index"),
                "delta": text,
            }

        out = self._flush(key, event, delta)
        if out and isinstance(event.get("text"), str):
            # The done event repeats the whole text: send what was released instead.
            out[-1] = {**event, "text": "".join(self._released.get(key, []))}
        return out

    # ------------------------------------------------------------------ scanning

    def _scanner(self, key: tuple[Any, ...]) -> StreamScanner:
        s = self._scanners.get(key)
        if s is None:
            s = self._scanners[key] = self._g.stream(
                self._direction, holdback=self._holdback, channel=self._channel
            )
        return s

    def _account(self, key: tuple[Any, ...], chunk: StreamChunk) -> str:
        self.findings.extend(chunk.findings)
        self.risk += chunk.risk
        self.errors.extend(chunk.errors)
        if chunk.blocked:
            self.blocked = True
        self._released.setdefault(key, []).append(chunk.text)
        return chunk.text

    def _feed(self, key: tuple[Any, ...], text: str) -> str:
        return self._account(key, self._scanner(key).feed(text))

    def _close(self, key: tuple[Any, ...]) -> str:
        s = self._scanners.get(key)
        return self._account(key, s.close()) if s is not None else ""

    def _flush(self, key: tuple[Any, ...], end: dict[str, Any], make: Any) -> list[Any]:
        rest = self._close(key)
        return [make(end, rest), end] if rest else [end]


def _key_part(value: Any) -> Any:
    """A stream key from an event field: attacker-shaped JSON may put a list or an object
    where an index belongs (unhashable); such a value keys by its JSON text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        return "json:" + orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return "repr:" + repr(value)
