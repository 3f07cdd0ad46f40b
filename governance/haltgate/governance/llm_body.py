"""What an LLM request body commits the budget to, read one way.

- :func:`looks_like_llm_call`: a JSON object with a model and messages, input or a prompt
  is metered as an LLM call whatever path it was sent to.
- :func:`output_cap`: every output cap a body names (``max_tokens``,
  ``max_completion_tokens``, ``max_output_tokens``) is read, the largest wins, times the
  number of completions asked for (``n``, ``best_of``): the provider may honour any of them.
- :func:`context_reference`: fields whose tokens are not in the body (a stored response or
  conversation, files, images fetched by URL, stored prompts, server-side tools): the
  input of such a call is bounded only by the model's context window.
- :func:`model_forms`: the names a model goes by once normalised as pricing does, so a
  ``gpt-5*`` rule also matches ``GPT-5``, `` gpt-5`` and ``openai/gpt-5``.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import unquote

from haltgate.governance.engine.pricing import normalise_model
from haltgate.governance.errors import BadRequestError
from haltgate.governance.strict_json import plain_keys

__all__ = [
    "INLINE_IMAGE_TOKENS",
    "LLM_FIELDS",
    "OUTPUT_CAPS",
    "choices",
    "context_reference",
    "looks_like_llm_call",
    "may_be_llm_call",
    "model_forms",
    "output_bounds",
    "output_cap",
]

OUTPUT_CAPS: Final = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_CHOICES: Final = ("n", "best_of")
_PROMPTS: Final = ("messages", "input", "prompt")

LLM_FIELDS: Final = frozenset(
    {
        "model",
        *_PROMPTS,
        *OUTPUT_CAPS,
        *_CHOICES,
        "stream",
        "stream_options",
        "previous_response_id",
        "conversation",
        "tools",
        "mcp_servers",
        "container",
        "system",
    }
)
"""Top-level fields haltgate reads in an LLM body: they must be spelled exactly."""

INLINE_IMAGE_TOKENS: Final = 8192
"""Input tokens reserved per image sent inline (data URL or base64 source). Providers scale
images down to a bounded size (OpenAI tiles or patches, Anthropic ~1.15 megapixels), so an
image costs at most a few thousand tokens whatever its bytes; this bound covers them."""

# Top-level fields that pull stored or fetched content into the prompt.
_STORED_TOP: Final = frozenset(
    {
        "previous_response_id",
        "conversation",
        "container",
        "mcp_servers",
        "tool_resources",
        "attachments",
    }
)
# Keys that refer to a stored file wherever they appear.
_FILE_KEYS: Final = frozenset({"file_id", "file_url", "file_data", "file_ids", "vector_store_ids"})
# Fields holding the prompt (messages and their parts): the walk looks only there.
_PROMPT_FIELDS: Final = ("messages", "input", "system", "prompt", "instructions")
_WALK_KEYS: Final = _FILE_KEYS | {"image_url", "source", "id"}
_TEXT_MESSAGE_KEYS: Final = frozenset({"role", "content", "name"})
# Server-side tools whose results the provider adds to the prompt itself.
_SERVER_TOOLS = re.compile(
    r"(web_search|web_fetch|file_search|code_interpreter|code_execution|mcp|"
    r"image_generation|computer)",
    re.IGNORECASE,
)


def may_be_llm_call(raw: bytes) -> bool:
    """Cheap screen over a raw body: an LLM-shaped JSON object cannot fail it (its key
    ``model``, in any case, or written with escapes)."""
    return b'"model"' in raw.lower() or b"\\" in raw


def looks_like_llm_call(obj: Any) -> bool:
    """A JSON object naming a model and messages, input or a prompt (keys compared as a
    case-insensitive upstream would)."""
    if not isinstance(obj, dict):
        return False
    keys = {k.casefold() for k in obj}
    return "model" in keys and any(k in keys for k in _PROMPTS)


def _int_field(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequestError(f"{key} must be an integer", code="invalid_request")
    if value < 0:
        raise BadRequestError(f"{key} must not be negative", code="invalid_request")
    return value


def output_cap(body: dict[str, Any]) -> int | None:
    """The largest output the body allows (``None``: it names no cap)."""
    return output_bounds(body)[0]


def output_bounds(body: dict[str, Any]) -> tuple[int | None, int]:
    """:func:`output_cap` and :func:`choices` of ``body`` read once (the caps validated
    first, then the choices)."""
    cap: int | None = None
    for key in OUTPUT_CAPS:
        value = _int_field(body, key)
        if value is not None and (cap is None or value > cap):
            cap = value
    count = choices(body)  # validated even without a cap
    return (None if cap is None else cap * count), count


def choices(body: dict[str, Any]) -> int:
    """How many completions the body asks for (``n``, ``best_of``; at least 1)."""
    count = 1
    for key in _CHOICES:
        value = _int_field(body, key)
        if value is not None and value > count:
            count = value
    return count


def context_reference(body: dict[str, Any]) -> tuple[str | None, int]:
    """What of the prompt is not in ``body``: the first field that brings in tokens the body
    does not hold, as a path (``None``: the body holds its whole prompt), and the number
    of images sent inline (each bounded by :data:`INLINE_IMAGE_TOKENS`).

    One walk over the parsed body (keys compared as a case-insensitive parser would). Its
    cost grows with the number of JSON objects and arrays, not with the text in them: a
    screen over the raw bytes cost more than the walk it saved (``bench/strict_json.py``)."""
    present = body.keys() & _STORED_TOP
    for key in sorted(present) if present else ():
        if body[key] not in (None, "", [], {}):
            return key, 0
    if isinstance(body.get("prompt"), dict):
        return "prompt", 0  # a stored prompt template (Responses API), not a text prompt
    tools = body.get("tools")
    if tools and isinstance(tools, list):
        for i, tool in enumerate(tools):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if isinstance(kind, str) and _SERVER_TOOLS.search(kind):
                return f"tools[{i}].type", 0
    return _walk(body)


def _walk(root: dict[str, Any]) -> tuple[str | None, int]:
    images = 0
    stack: list[Any] = []
    for field in _PROMPT_FIELDS:
        value = root.get(field)
        if type(value) is list:
            # Plain text messages ({"role": ..., "content": "..."}), the bulk of a long
            # conversation, hold nothing to look for: skipped in one comprehension.
            stack.extend(
                [
                    m
                    for m in value
                    if not (
                        type(m) is dict
                        and type(m.get("content")) is str
                        and m.keys() <= _TEXT_MESSAGE_KEYS
                    )
                ]
            )
        elif type(value) is dict:
            stack.append(value)
    pop = stack.pop
    push = stack.append
    while stack:
        node = pop()
        if type(node) is dict:
            # The common node (a message, a text part) has none of the keys looked for and
            # only lower-case ASCII keys: C-level checks, no per-key Python.
            if node.keys() & _WALK_KEYS or not plain_keys(node):
                ref, found = _inspect(node)
                if ref is not None:
                    return ref, 0
                images += found
            values: Any = node.values()
        elif type(node) is list:
            values = node
        else:
            continue
        for item in values:
            t = type(item)
            if t is dict or t is list:
                push(item)
    return None, images


def _inspect(node: dict[str, Any]) -> tuple[str | None, int]:
    """One object's keys (compared as a case-insensitive parser would)."""
    images = 0
    for key, item in node.items():
        name = key if key.islower() and key.isascii() else key.casefold()
        if name in _FILE_KEYS:
            if item not in (None, "", []):
                return f"{key} (in {_where(node)})", 0
        elif name == "image_url":
            if _remote_url(item):
                return f"{key} (in {_where(node)})", 0
            images += 1
        elif name == "source" and type(item) is dict:
            kind = _source_kind(item)
            if kind == "expanded":
                return f"{key} (in {_where(node)})", 0
            images += kind == "image"
        elif name == "id" and node.get("type") == "item_reference":
            return f"{key} (in {_where(node)})", 0  # a stored item of an earlier response
    return None, images


def _where(node: dict[str, Any]) -> str:
    kind = node.get("type")
    return f"a {kind!r} part" if isinstance(kind, str) else "the body"


def _source_kind(source: dict[str, Any]) -> str:
    """An Anthropic content source: ``expanded`` when the provider brings content in
    (fetched ``url``, stored ``file``, an inline document: a PDF's pages cost tokens its
    bytes do not bound), ``image`` for an inline image, else ``text``."""
    kind = source.get("type")
    if kind in ("url", "file"):
        return "expanded"
    if kind != "base64":
        return "text"
    media = source.get("media_type")
    return "image" if isinstance(media, str) and media.startswith("image/") else "expanded"


def _remote_url(value: Any) -> bool:
    if isinstance(value, dict):
        value = value.get("url")
    return not (isinstance(value, str) and value.startswith("data:"))


def model_forms(model: str) -> tuple[str, ...]:
    """The names a requested model goes by: as sent, trimmed and lower-cased, without a
    provider prefix, and as pricing normalises it (date snapshot removed too)."""
    trimmed = model.strip().lower()
    bare = trimmed.rsplit("/", 1)[1] if "/" in trimmed else trimmed
    return tuple(dict.fromkeys((model, trimmed, bare, normalise_model(model))))


def path_deployment(path: str) -> str | None:
    """The deployment an Azure-style route names (``.../deployments/NAME/...``), decoded; an
    upstream that routes by it serves NAME whatever the body's ``model`` says."""
    segments = path.split("/")
    for i, segment in enumerate(segments[:-1]):
        if segment.lower() == "deployments" and segments[i + 1]:
            return unquote(segments[i + 1])
    return None
