"""Token usage read from LLM API responses, per provider dialect, streamed or not.

Normalised counts (one convention for every provider, the budget engine's):

- ``input_tokens``: every prompt token, including cache reads and cache writes
  (OpenAI's ``prompt_tokens``; Anthropic's ``input_tokens + cache_read_input_tokens +
  cache_creation_input_tokens``);
- ``cached_input_tokens``: the part of the input read from the provider's cache;
- ``cache_write_tokens``: the part of the input written to the cache (Anthropic);
- ``output_tokens``: every generated token, including reasoning tokens;
- ``reasoning_tokens``: the reasoning part of the output.

When a response carries no usage (a stream the client asked without usage and the
upstream ignored ``stream_options``, a stream cut short) the counts are estimated from
the text seen (:data:`CHARS_PER_TOKEN`) and marked ``estimated``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from haltgate.sidecar.sse import SSEEvent

__all__ = ["Dialect", "TokenCounts", "UsageReader"]

CHARS_PER_TOKEN = 4
"""Rough characters per token for estimates (English text, BPE tokenizers)."""


class Dialect(StrEnum):
    """The LLM API an endpoint speaks, which decides where usage lives."""

    OPENAI_CHAT = "openai.chat"
    OPENAI_COMPLETIONS = "openai.completions"
    OPENAI_EMBEDDINGS = "openai.embeddings"
    OPENAI_RESPONSES = "openai.responses"
    ANTHROPIC_MESSAGES = "anthropic.messages"


@dataclass(slots=True)
class TokenCounts:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    model: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "estimated": self.estimated,
            "model": self.model,
        }


def _int(obj: Any, *keys: str) -> int:
    """``obj[k1][k2]...`` as a non-negative int, 0 if missing or not an int."""
    for key in keys:
        if not isinstance(obj, dict):
            return 0
        obj = obj.get(key)
    return obj if isinstance(obj, int) and not isinstance(obj, bool) and obj > 0 else 0


def _openai_counts(usage: dict[str, Any], counts: TokenCounts) -> None:
    counts.input_tokens = _int(usage, "prompt_tokens")
    counts.output_tokens = _int(usage, "completion_tokens")
    counts.cached_input_tokens = _int(usage, "prompt_tokens_details", "cached_tokens")
    counts.reasoning_tokens = _int(usage, "completion_tokens_details", "reasoning_tokens")


def _responses_counts(usage: dict[str, Any], counts: TokenCounts) -> None:
    counts.input_tokens = _int(usage, "input_tokens")
    counts.output_tokens = _int(usage, "output_tokens")
    counts.cached_input_tokens = _int(usage, "input_tokens_details", "cached_tokens")
    counts.reasoning_tokens = _int(usage, "output_tokens_details", "reasoning_tokens")


def _anthropic_counts(usage: dict[str, Any], counts: TokenCounts) -> None:
    # Anthropic reports cache reads and writes apart from input_tokens; a message_delta may
    # repeat only some fields, so update what is present.
    if "input_tokens" in usage or "cache_read_input_tokens" in usage:
        cached = _int(usage, "cache_read_input_tokens")
        written = _int(usage, "cache_creation_input_tokens")
        counts.input_tokens = _int(usage, "input_tokens") + cached + written
        counts.cached_input_tokens = cached
        counts.cache_write_tokens = written
    if "output_tokens" in usage:
        counts.output_tokens = _int(usage, "output_tokens")


def _without_ids(value: Any) -> Any:
    """The generated content without per-response ids (they differ on every answer).
    Recurses into containers only (not one call per string or number)."""
    if isinstance(value, list):
        return [_without_ids(v) if isinstance(v, list | dict) else v for v in value]
    if isinstance(value, dict):
        return {
            k: _without_ids(v) if isinstance(v, list | dict) else v
            for k, v in value.items()
            if k != "id"
        }
    return value


class UsageReader:
    """Reads the usage of one LLM response: a JSON body, or the events of a stream."""

    __slots__ = ("_content", "_dialect", "_found", "_seen_chars", "counts", "text")

    def __init__(self, dialect: Dialect, model: str | None, *, keep_text: bool = False) -> None:
        self._dialect = dialect
        self._found = False
        self._seen_chars = 0
        self.counts = TokenCounts(model=model)
        self._content = hashlib.blake2b(digest_size=16)
        self.text: list[str] | None = [] if keep_text else None
        """With ``keep_text``: streamed text deltas not yet taken (for response guardrails)."""

    @property
    def content_digest(self) -> str:
        """Digest of the generated content only (not ids, timestamps, usage): the same
        answer twice gives the same value, which is what stagnation detection needs."""
        return self._content.hexdigest()

    def _saw(self, text: str) -> None:
        self._seen_chars += len(text)
        self._content.update(text.encode("utf-8", "surrogatepass"))
        if self.text is not None:
            self.text.append(text)

    def take_text(self) -> str:
        """The streamed text seen since the last call (``keep_text`` readers only)."""
        if not self.text:
            return ""
        out = "".join(self.text)
        self.text.clear()
        return out

    @property
    def found(self) -> bool:
        """The provider reported usage (the counts are not estimates)."""
        return self._found

    @property
    def streamed_output_estimate(self) -> int:
        """Output tokens estimated from the text streamed so far."""
        return (self._seen_chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN

    def read_body(self, body: bytes) -> None:
        """Read usage from a complete JSON response body (errors leave counts at 0)."""
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if isinstance(obj, dict):
            self._read_object(obj)
            for key in ("choices", "content", "output", "data"):
                if key in obj:
                    self._content.update(orjson.dumps(_without_ids(obj[key])))
                    break

    def _read_object(self, obj: dict[str, Any]) -> None:
        model = obj.get("model")
        if isinstance(model, str):
            self.counts.model = model
        usage = obj.get("usage")
        if not isinstance(usage, dict):
            return
        self._found = True
        match self._dialect:
            case Dialect.OPENAI_RESPONSES:
                _responses_counts(usage, self.counts)
            case Dialect.ANTHROPIC_MESSAGES:
                _anthropic_counts(usage, self.counts)
            case _:
                _openai_counts(usage, self.counts)

    def read_event(self, event: SSEEvent | None) -> Any:
        """Read one streamed event: usage where the dialect puts it, text for estimates.

        Returns the event's parsed JSON data (``None`` when it is not JSON), for the
        relay to use without parsing it again."""
        if event is None:
            return None
        data = event.data
        if data == "[DONE]":
            return None
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return obj
        match self._dialect:
            case Dialect.ANTHROPIC_MESSAGES:
                self._anthropic_event(obj)
            case Dialect.OPENAI_RESPONSES:
                self._responses_event(obj)
            case _:
                self._openai_chunk(obj)
        return obj

    def _openai_chunk(self, obj: dict[str, Any]) -> None:
        choices = obj.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta")
                text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
                if isinstance(text, str):
                    self._saw(text)
        if isinstance(obj.get("usage"), dict):
            self._read_object(obj)

    def _responses_event(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "response.output_text.delta":
            delta = obj.get("delta")
            if isinstance(delta, str):
                self._saw(delta)
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            response = obj.get("response")
            if isinstance(response, dict):
                self._read_object(response)

    def _anthropic_event(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "content_block_delta":
            delta = obj.get("delta")
            if isinstance(delta, dict):
                text = delta.get("text") or delta.get("thinking") or delta.get("partial_json")
                if isinstance(text, str):
                    self._saw(text)
        elif kind == "message_start":
            message = obj.get("message")
            if isinstance(message, dict):
                self._read_object(message)
        elif kind == "message_delta" and isinstance(obj.get("usage"), dict):
            if "output_tokens" in obj["usage"]:
                self._found = True
            _anthropic_counts(obj["usage"], self.counts)

    def result(self, *, complete: bool, input_estimate: int) -> TokenCounts:
        """Final counts. Without reported usage (or for a cut stream) they are estimates."""
        counts = self.counts
        if self._dialect is Dialect.ANTHROPIC_MESSAGES and not complete:
            counts.estimated = True
        if not self._found or not complete:
            counts.estimated = True
            counts.output_tokens = max(counts.output_tokens, self.streamed_output_estimate)
            if counts.input_tokens == 0:
                counts.input_tokens = input_estimate
        return counts
