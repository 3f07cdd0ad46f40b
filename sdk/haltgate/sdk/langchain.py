"""LangChain integration: typed halts, budget warnings, and a chat model behind the sidecar.

Behind the sidecar (explicit mode)::

    from haltgate.sdk.langchain import HaltgateCallbackHandler, chat_openai
    handler = HaltgateCallbackHandler()
    model = chat_openai("openai", model="gpt-4o-mini", handler=handler)
    model.invoke("hi")        # raises ExhaustionError (etc.) when haltgate halts the run

* :func:`chat_openai` points ``langchain_openai.ChatOpenAI`` at the sidecar's alias base URL,
  asks for response headers (budget warnings) and installs an HTTP hook so that the OpenAI
  SDK does not retry haltgate refusals (it still retries real upstream failures);
* :class:`HaltgateCallbackHandler` turns the OpenAI SDK error of a refusal (HTTP, or the
  ``event: error`` of a stream the sidecar cut) into :mod:`haltgate.sdk.errors` exceptions,
  which propagate out of ``invoke``/``stream``/tool runs and so stop the agent loop; it
  records ``x-haltgate-budget-warning`` dimensions in ``warnings`` and calls ``on_warning``.

Without a sidecar, ``HaltgateCallbackHandler(local=...)`` drives an in-process governor
(``haltgate.governance.inprocess.LocalGovernance`` of the main ``haltgate`` distribution):
every model and tool call is reserved before it runs and settled after, with the same
engine and the same exceptions. That mode is **bypassable** (it runs inside the agent).
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from haltgate.sdk.client import SidecarClient, base_url, budget_warnings
from haltgate.sdk.errors import HaltgateError, find_haltgate_error
from haltgate.sdk.http_hooks import openai_http_clients
from haltgate.sdk.tracking import (
    HaltTracker,
    InProcessBudget,
    TokenUsage,
    WarningCallback,
    default_api_key,
    view_client,
)

__all__ = ["HaltgateCallbackHandler", "chat_openai"]

log = logging.getLogger("haltgate.sdk.langchain")


def _usage_of(response: LLMResult) -> TokenUsage | None:
    """Token usage of a LangChain result (message usage_metadata, else llm_output)."""
    inp = out = cached = reasoning = 0
    found = False
    for gens in response.generations:
        for gen in gens:
            meta = getattr(getattr(gen, "message", None), "usage_metadata", None)
            if meta:
                found = True
                inp += int(meta.get("input_tokens", 0))
                out += int(meta.get("output_tokens", 0))
                cached += int((meta.get("input_token_details") or {}).get("cache_read", 0) or 0)
                reasoning += int((meta.get("output_token_details") or {}).get("reasoning", 0) or 0)
    if not found and response.llm_output:
        tu = response.llm_output.get("token_usage") or response.llm_output.get("usage") or {}
        if tu:
            found = True
            inp = int(tu.get("prompt_tokens", tu.get("input_tokens", 0)) or 0)
            out = int(tu.get("completion_tokens", tu.get("output_tokens", 0)) or 0)
    if not found:
        return None
    return TokenUsage(input_tokens=inp, output_tokens=out,
                      cached_input_tokens=min(cached, inp),
                      reasoning_tokens=min(reasoning, out))  # fmt: skip


def _headers_of(response: LLMResult) -> dict[str, str]:
    for gens in response.generations:
        for gen in gens:
            msg = gen.message if isinstance(gen, ChatGeneration) else None
            meta = getattr(msg, "response_metadata", None) or {}
            headers = meta.get("headers") or (gen.generation_info or {}).get("headers")
            if isinstance(headers, dict):
                return headers
    headers = (response.llm_output or {}).get("headers")
    return headers if isinstance(headers, dict) else {}


def _text_of(response: LLMResult) -> str:
    return "\n".join(g.text for gens in response.generations for g in gens)


def _prompt_chars(messages: list[list[BaseMessage]]) -> int:
    return sum(len(str(m.content)) for batch in messages for m in batch)


class HaltgateCallbackHandler(HaltTracker, BaseCallbackHandler):
    """Surfaces haltgate budget warnings and halts in LangChain runs.

    ``on_warning(dimensions)``: called when an answer carries
    ``x-haltgate-budget-warning`` (or, in local mode, when the engine warns).
    ``local``: an in-process governor (bypassable) for runs without a sidecar.
    ``max_output_tokens``: the worst case reserved per model call in local mode when the
    model names no cap. ``sidecar``: where to read the run's state (default: the
    ``HALTGATE_URL`` sidecar).

    After a halt, ``halt`` holds the exception; it is raised again, without a request,
    for as long as the halt holds: until its ``retry_after`` for a periodic budget, else
    while the sidecar's view of the run says halted (a lift or reset ends it).
    """

    _log = log
    raise_error = True  # a halt must stop the run, not be logged and ignored
    run_inline = True  # same thread as the run: local governance is not thread-safe

    def __init__(
        self,
        *,
        on_warning: WarningCallback | None = None,
        local: InProcessBudget | None = None,
        max_output_tokens: int = 4096,
        sidecar: SidecarClient | None = None,
    ) -> None:
        self.on_warning = on_warning
        self.local = local
        self.sidecar = sidecar
        self.max_output_tokens = max_output_tokens
        self.warnings: tuple[str, ...] = ()
        self.halt: HaltgateError | None = None
        self._calls: dict[UUID, str] = {}

    def __repr__(self) -> str:
        mode = "local, BYPASSABLE" if self.local is not None else "sidecar"
        return f"<HaltgateCallbackHandler {mode} halt={self.halt!r}>"

    # ------------------------------------------------------------------ helpers

    def _raise_halt(self, error: BaseException | None) -> None:
        found = find_haltgate_error(error)
        if found is not None:
            self._remember(found)
            raise found from error

    def _before_call(self, run_id: UUID, **reserve: Any) -> None:
        self._check_halt()
        if self.local is None:
            return
        try:
            self._calls[run_id] = self.local.reserve(**reserve)
        except Exception as e:
            found = find_haltgate_error(e)
            if found is None:
                raise
            self._remember(found)
            raise found from e
        finally:
            self._warn(self.local.warnings)

    def _after_call(self, run_id: UUID, ok: bool, **settle: Any) -> None:
        call_id = self._calls.pop(run_id, None)
        if self.local is None or call_id is None:
            return
        try:
            self.local.settle(call_id, ok=ok, **settle)
        finally:
            self._warn(self.local.warnings)

    # ------------------------------------------------------------------ model calls

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]],
                            *, run_id: UUID, **kwargs: Any) -> None:  # fmt: skip
        """Local mode: reserve the call's worst case (a token is at least a character/4)."""
        params = kwargs.get("invocation_params") or {}
        model = params.get("model") or params.get("model_name")
        cap = params.get("max_tokens") or params.get("max_completion_tokens")
        self._before_call(
            run_id, kind="llm", target=str(model or "model"),
            payload=[[m.model_dump(mode="json") for m in batch] for batch in messages],
            model=model, max_input_tokens=_prompt_chars(messages),
            max_output_tokens=int(cap or self.max_output_tokens),
        )  # fmt: skip

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
                     **kwargs: Any) -> None:  # fmt: skip
        """Local mode for completion-style models."""
        params = kwargs.get("invocation_params") or {}
        model = params.get("model") or params.get("model_name")
        self._before_call(run_id, kind="llm", target=str(model or "model"), payload=prompts,
                          model=model, max_input_tokens=sum(len(p) for p in prompts),
                          max_output_tokens=int(params.get("max_tokens")
                                                or self.max_output_tokens))  # fmt: skip

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Budget warnings from the sidecar's headers; local mode: settle the usage."""
        if self.local is None:
            self._warn(budget_warnings(_headers_of(response)))
        self._after_call(run_id, True, usage=_usage_of(response), result=_text_of(response))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A haltgate refusal becomes its typed exception (raised out of the run)."""
        found = find_haltgate_error(error)
        try:
            self._after_call(run_id, False, error=error)
        finally:
            if found is not None:
                self._raise_halt(error)

    # ------------------------------------------------------------------ tool calls

    def on_tool_start(self, serialized: dict[str, Any], input_str: str, *, run_id: UUID,
                      **kwargs: Any) -> None:  # fmt: skip
        """Local mode: reserve the tool call (counts calls, distinct tools, repeats)."""
        name = str(serialized.get("name") or kwargs.get("name") or "tool")
        self._before_call(run_id, kind="mcp", target=name,
                          payload=kwargs.get("inputs") or input_str, tool=name)  # fmt: skip

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Local mode: settle the tool call with a digest of its result."""
        self._after_call(run_id, True, result=str(getattr(output, "content", output)))

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A tool that called through the sidecar and got a refusal: typed exception."""
        try:
            self._after_call(run_id, False, error=error)
        finally:
            self._raise_halt(error)


def chat_openai(
    alias: str = "openai",
    *,
    model: str,
    handler: HaltgateCallbackHandler | None = None,
    url: str | None = None,
    path: str = "v1",
    **kwargs: Any,
) -> Any:
    """A ``langchain_openai.ChatOpenAI`` sending its calls through the sidecar.

    ``alias``: the policy's upstream name; ``url``: the explicit listener
    (``HALTGATE_URL``); ``path``: appended to the alias (``v1`` for OpenAI-compatible
    upstreams whose URL has no version). ``handler`` (created if omitted) is attached as a
    callback; other keyword arguments go to ``ChatOpenAI``. Needs ``langchain-openai``.
    """
    from langchain_openai import ChatOpenAI

    handler = handler or HaltgateCallbackHandler(sidecar=view_client(url))
    if handler.sidecar is None and url is not None:
        handler.sidecar = view_client(url)
    sync_client, async_client = openai_http_clients()
    default_api_key(kwargs)
    callbacks = [*(kwargs.pop("callbacks", None) or []), handler]
    return ChatOpenAI(
        model=model,
        base_url=base_url(alias, path, url=url),
        include_response_headers=True,
        http_client=sync_client,
        http_async_client=async_client,
        callbacks=callbacks,
        **kwargs,
    )
