"""AutoGen (autogen-core / autogen-agentchat 0.7) integration: typed halts and budgets.

Behind the sidecar (explicit mode)::

    from haltgate.sdk.autogen import openai_chat_client
    client = openai_chat_client("openai", model="gpt-4o-mini")
    agent = AssistantAgent("worker", model_client=client)
    await agent.run(task="...")   # raises ExhaustionError (etc.) when haltgate halts the run

* :class:`HaltgateChatCompletionClient` wraps any ``ChatCompletionClient``: a refusal of the
  sidecar (HTTP, or the ``event: error`` of a cut stream) becomes its typed exception from
  :mod:`haltgate.sdk.errors`, which ends the agent's turn and the caller's loop; after a halt
  every further ``create`` fails at once with the same halt, without a request.
  With ``local=LocalGovernance(...)`` it applies the policy's budgets in process when no
  sidecar is present (**bypassable**, see :mod:`haltgate.sdk.local`).
* :func:`openai_chat_client` builds ``OpenAIChatCompletionClient`` pointed at the sidecar's
  alias, with the HTTP hook that keeps the OpenAI SDK from retrying refusals and reads the
  budget warning headers, wrapped as above.
* :class:`HaltgateInterventionHandler` (autogen-core runtimes) drops every message once the
  run is halted, so agents of a team that would still be messaged stop as well.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from autogen_core import AgentId, DropMessage, MessageContext
from autogen_core.models import ChatCompletionClient, CreateResult, LLMMessage, RequestUsage

from haltgate.governance.engine import Usage
from haltgate.sdk.client import base_url, budget_warnings
from haltgate.sdk.errors import HaltgateError, find_haltgate_error
from haltgate.sdk.http_hooks import openai_http_clients
from haltgate.sdk.local import LocalGovernance
from haltgate.sdk.tracking import HaltTracker, WarningCallback, default_api_key

try:  # the intervention handler base moved between autogen-core releases
    from autogen_core import DefaultInterventionHandler
except ImportError:  # pragma: no cover
    from autogen_core.intervention import DefaultInterventionHandler  # type: ignore[no-redef]

__all__ = ["HaltgateChatCompletionClient", "HaltgateInterventionHandler", "openai_chat_client"]

log = logging.getLogger("haltgate.sdk.autogen")


def _message_payload(messages: Sequence[LLMMessage]) -> list[Any]:
    return [m.model_dump(mode="json") for m in messages]


def _usage(u: RequestUsage) -> Usage:
    return Usage(input_tokens=int(u.prompt_tokens), output_tokens=int(u.completion_tokens))


class HaltgateChatCompletionClient(HaltTracker, ChatCompletionClient):
    """A ``ChatCompletionClient`` that raises haltgate's typed halts (see module doc).

    ``inner``: the client doing the calls. ``local``: in-process governance (bypassable)
    for runs without a sidecar. ``on_warning(dimensions)``: budget warnings.
    ``max_output_tokens``: the worst case reserved per call in local mode.
    """

    _log = log

    def __init__(
        self,
        inner: ChatCompletionClient,
        *,
        local: LocalGovernance | None = None,
        on_warning: WarningCallback | None = None,
        max_output_tokens: int = 4096,
    ) -> None:
        self.inner = inner
        self.local = local
        self.on_warning = on_warning
        self.max_output_tokens = max_output_tokens
        self.warnings: tuple[str, ...] = ()
        self.halt: HaltgateError | None = None

    def __repr__(self) -> str:
        mode = "local, BYPASSABLE" if self.local is not None else "sidecar"
        return f"<HaltgateChatCompletionClient {mode} inner={self.inner!r} halt={self.halt!r}>"

    # ------------------------------------------------------------------ haltgate

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """Record the budget warnings of a sidecar answer (HTTP hook callback)."""
        self._warn(budget_warnings(headers))

    def _translate(self, error: BaseException) -> BaseException:
        found = find_haltgate_error(error)
        if found is None:
            return error
        self._remember(found)
        return found

    def _reserve(self, messages: Sequence[LLMMessage], extra: Mapping[str, Any]) -> str | None:
        if self.halt is not None:
            raise self.halt
        if self.local is None:
            return None
        model = str(self.inner.model_info.get("family", "model"))
        model = str(getattr(self.inner, "_create_args", {}).get("model", model))
        payload = _message_payload(messages)
        cap = extra.get("max_tokens") or extra.get("max_completion_tokens")
        try:
            return self.local.reserve(
                kind="llm", target=model, payload=payload, model=model,
                max_input_tokens=len(str(payload)),
                max_output_tokens=int(cap or self.max_output_tokens),
            )  # fmt: skip
        except HaltgateError as e:
            raise self._translate(e) from None
        finally:
            self._warn(self.local.warnings)

    def _settle(self, call_id: str | None, result: CreateResult | None,
                error: BaseException | None) -> None:  # fmt: skip
        if self.local is None or call_id is None:
            return
        if result is not None:
            self.local.settle(call_id, ok=True, usage=_usage(result.usage),
                              result=result.content)  # fmt: skip
        else:
            self.local.settle(call_id, ok=False, error=error)
        self._warn(self.local.warnings)

    # ------------------------------------------------------------------ ChatCompletionClient

    async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:
        """``inner.create`` with haltgate's halts raised as typed exceptions."""
        call_id = self._reserve(messages, kwargs.get("extra_create_args") or {})
        try:
            result = await self.inner.create(messages, **kwargs)
        except Exception as e:
            self._settle(call_id, None, e)
            translated = self._translate(e)
            if translated is e:
                raise
            raise translated from e
        self._settle(call_id, result, None)
        return result

    async def create_stream(
        self, messages: Sequence[LLMMessage], **kwargs: Any
    ) -> AsyncGenerator[str | CreateResult, None]:
        """``inner.create_stream`` with halts (also mid-stream) raised as typed exceptions."""
        call_id = self._reserve(messages, kwargs.get("extra_create_args") or {})
        result: CreateResult | None = None
        try:
            async for item in self.inner.create_stream(messages, **kwargs):
                if isinstance(item, CreateResult):
                    result = item
                yield item
        except Exception as e:
            self._settle(call_id, None, e)
            translated = self._translate(e)
            if translated is e:
                raise
            raise translated from e
        self._settle(call_id, result, None if result else RuntimeError("stream without result"))

    async def close(self) -> None:
        await self.inner.close()

    def actual_usage(self) -> RequestUsage:
        return self.inner.actual_usage()

    def total_usage(self) -> RequestUsage:
        return self.inner.total_usage()

    def count_tokens(self, messages: Sequence[LLMMessage], **kwargs: Any) -> int:
        return self.inner.count_tokens(messages, **kwargs)

    def remaining_tokens(self, messages: Sequence[LLMMessage], **kwargs: Any) -> int:
        return self.inner.remaining_tokens(messages, **kwargs)

    @property
    def capabilities(self) -> Any:  # deprecated in autogen, still abstract
        return self.inner.model_info

    @property
    def model_info(self) -> Any:
        return self.inner.model_info


class HaltgateInterventionHandler(DefaultInterventionHandler):
    """Drops every message of an autogen-core runtime once ``client`` is halted."""

    def __init__(self, client: HaltgateChatCompletionClient) -> None:
        self.client = client

    async def on_send(self, message: Any, *, message_context: MessageContext,
                      recipient: AgentId) -> Any:  # fmt: skip
        return DropMessage if self.client.halt is not None else message

    async def on_publish(self, message: Any, *, message_context: MessageContext) -> Any:
        return DropMessage if self.client.halt is not None else message


def openai_chat_client(
    alias: str = "openai",
    *,
    model: str,
    url: str | None = None,
    path: str = "v1",
    on_warning: WarningCallback | None = None,
    **kwargs: Any,
) -> HaltgateChatCompletionClient:
    """``OpenAIChatCompletionClient`` through the sidecar, wrapped for typed halts.

    ``alias``/``url``/``path`` as in :func:`haltgate.sdk.client.base_url`; other keyword
    arguments go to ``OpenAIChatCompletionClient`` (``model_info`` for models autogen does
    not know). Needs ``autogen-ext[openai]``.
    """
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    default_api_key(kwargs)
    holder: list[HaltgateChatCompletionClient] = []
    _, async_client = openai_http_clients(
        on_headers=lambda headers: holder[0].observe_headers(headers) if holder else None
    )
    # http_client is not in autogen's typed config, but it hands every AsyncOpenAI
    # keyword through to the OpenAI client.
    inner = OpenAIChatCompletionClient(  # type: ignore[call-arg]
        model=model, base_url=base_url(alias, path, url=url), http_client=async_client, **kwargs
    )
    client = HaltgateChatCompletionClient(inner, on_warning=on_warning)
    holder.append(client)
    return client
