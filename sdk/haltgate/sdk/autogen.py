"""AutoGen (autogen-core / autogen-agentchat 0.7) integration: typed halts and budgets.

Behind the sidecar (explicit mode)::

    from autogen_agentchat.agents import AssistantAgent
    from haltgate.sdk.autogen import openai_chat_client

    client = openai_chat_client("openai", model="gpt-4o-mini")
    agent = AssistantAgent("worker", model_client=client)
    await agent.run(task="...")   # raises ExhaustionError (etc.) when haltgate halts the run

* :class:`HaltgateChatCompletionClient` wraps any ``ChatCompletionClient``: a refusal of the
  sidecar (HTTP, or the ``event: error`` of a cut stream) becomes its typed exception from
  :mod:`haltgate.sdk.errors`, which ends the agent's turn and the caller's loop; while the
  halt holds (see :mod:`haltgate.sdk.tracking`) every further ``create`` fails at once with
  it, without a request. Wrapping an OpenAI client by hand installs the same HTTP hooks on
  it as :func:`openai_chat_client` does (no retry of refusals, budget warnings read from
  the headers, so ``on_warning`` works either way). ``dump_component()`` /
  ``load_component()`` work (``on_warning`` and ``local``, being code, are not saved).
  With ``local=`` an in-process governor applies the policy's budgets when no sidecar is
  present (**bypassable**).
* :func:`openai_chat_client` builds ``OpenAIChatCompletionClient`` pointed at the sidecar's
  alias, wrapped as above.
* Teams (``RoundRobinGroupChat`` and the others): a halt inside a team ends ``team.run``
  with AutoGen's ``RuntimeError``; :func:`~haltgate.sdk.errors.find_haltgate_error` gives
  back the typed halt behind it.
* :class:`HaltgateInterventionHandler` (autogen-core runtimes) drops the messages of your
  own agents while the run is halted, so that agents that would still be messaged stop as
  well; it never drops AutoGen's own team protocol (start, speaker requests, errors,
  termination), so a team still ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Self

from autogen_core import AgentId, Component, ComponentModel, DropMessage, MessageContext
from autogen_core.models import ChatCompletionClient, CreateResult, LLMMessage, RequestUsage
from pydantic import BaseModel

from haltgate.sdk.client import SidecarClient, base_url, budget_warnings
from haltgate.sdk.errors import HaltgateError, find_haltgate_error
from haltgate.sdk.http_hooks import DECISION_HEADER, async_no_retry_hook
from haltgate.sdk.tracking import (
    HaltTracker,
    InProcessBudget,
    TokenUsage,
    WarningCallback,
    default_api_key,
    view_client,
)

try:  # the intervention handler base moved between autogen-core releases
    from autogen_core import DefaultInterventionHandler
except ImportError:  # pragma: no cover
    from autogen_core.intervention import DefaultInterventionHandler  # type: ignore[no-redef]

__all__ = [
    "HaltgateChatCompletionClient",
    "HaltgateClientConfig",
    "HaltgateInterventionHandler",
    "openai_chat_client",
]

log = logging.getLogger("haltgate.sdk.autogen")

TEAM_PROTOCOL_MODULE = "autogen_agentchat."
"""Messages of AutoGen's own team protocol (their classes live in this package): never
dropped, or ``team.run`` would wait for an answer that cannot come."""


def _message_payload(messages: Sequence[LLMMessage]) -> list[Any]:
    return [m.model_dump(mode="json") for m in messages]


def _usage(u: RequestUsage) -> TokenUsage:
    return TokenUsage(input_tokens=int(u.prompt_tokens), output_tokens=int(u.completion_tokens))


def _http_client_of(inner: Any) -> Any:
    """The httpx client under an OpenAI-based ChatCompletionClient, else None."""
    openai_client = getattr(inner, "_client", None)
    http = getattr(openai_client, "_client", None)
    return http if hasattr(http, "event_hooks") else None


def _install_hooks(inner: Any, observe: Callable[[Any], Awaitable[None]]) -> bool:
    """Add the no-retry hook and ``observe`` to the inner client's HTTP responses (once)."""
    http = _http_client_of(inner)
    if http is None:
        return False
    hooks = dict(http.event_hooks)
    response = list(hooks.get("response", []))
    if async_no_retry_hook not in response:
        response.append(async_no_retry_hook)
    response.append(observe)
    hooks["response"] = response
    http.event_hooks = hooks
    return True


class HaltgateClientConfig(BaseModel):
    """What ``dump_component()`` saves of a :class:`HaltgateChatCompletionClient`."""

    inner: ComponentModel
    """The wrapped client's own component model."""
    max_output_tokens: int = 4096
    sidecar_url: str | None = None
    """The explicit listener whose self view tells whether a halt still holds."""


class HaltgateChatCompletionClient(
    HaltTracker, ChatCompletionClient, Component[HaltgateClientConfig]
):
    """A ``ChatCompletionClient`` that raises haltgate's typed halts (see module doc).

    ``inner``: the client doing the calls (an OpenAI-based one gets haltgate's HTTP hooks).
    ``local``: an in-process governor (bypassable) for runs without a sidecar.
    ``on_warning(dimensions)``: budget warnings. ``max_output_tokens``: the worst case
    reserved per call in local mode. ``sidecar``: where to read the run's state (default:
    the ``HALTGATE_URL`` sidecar).
    """

    component_type = "model"
    component_config_schema = HaltgateClientConfig
    component_provider_override = "haltgate.sdk.autogen.HaltgateChatCompletionClient"
    _log = log

    def __init__(
        self,
        inner: ChatCompletionClient,
        *,
        local: InProcessBudget | None = None,
        on_warning: WarningCallback | None = None,
        max_output_tokens: int = 4096,
        sidecar: SidecarClient | None = None,
    ) -> None:
        self.inner = inner
        self.local = local
        self.on_warning = on_warning
        self.max_output_tokens = max_output_tokens
        self.sidecar = sidecar
        self.warnings: tuple[str, ...] = ()
        self.halt: HaltgateError | None = None

        async def observe(response: Any) -> None:
            if DECISION_HEADER in response.headers:
                self.observe_headers(response.headers)

        self.hooked = _install_hooks(inner, observe)
        """True when the inner client's answers are observed (warnings, no retries)."""
        if on_warning is not None and not self.hooked:
            log.warning("haltgate: %s is not OpenAI-based: its answers' budget warnings "
                        "cannot be read, on_warning will not be called",
                        type(inner).__name__)  # fmt: skip

    # ------------------------------------------------------------------ component

    def _to_config(self) -> HaltgateClientConfig:
        return HaltgateClientConfig(
            inner=self.inner.dump_component(),
            max_output_tokens=self.max_output_tokens,
            sidecar_url=self.sidecar.url if self.sidecar else None,
        )

    @classmethod
    def _from_config(cls, config: HaltgateClientConfig) -> Self:
        inner = ChatCompletionClient.load_component(config.inner)
        sidecar = view_client(config.sidecar_url) if config.sidecar_url else None
        return cls(inner, max_output_tokens=config.max_output_tokens, sidecar=sidecar)

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

    async def current_halt(self) -> HaltgateError | None:
        """The remembered halt if it still holds (asks the sidecar's view in a thread)."""
        if self.halt is None:
            return None
        return await asyncio.to_thread(self._current_halt)

    async def _reserve(self, messages: Sequence[LLMMessage],
                       extra: Mapping[str, Any]) -> str | None:  # fmt: skip
        halt = await self.current_halt()
        if halt is not None:
            raise halt
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
        except Exception as e:
            translated = self._translate(e)
            if translated is e:
                raise
            raise translated from e
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
        call_id = await self._reserve(messages, kwargs.get("extra_create_args") or {})
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
        call_id = await self._reserve(messages, kwargs.get("extra_create_args") or {})
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
    """Drops the messages of your own agents while ``client``'s run is halted.

    AutoGen's team protocol (``autogen_agentchat`` messages: start, speaker requests,
    agent responses, errors, termination) always passes: a halted team then ends with the
    halt (the next model call fails at once) instead of waiting forever.
    """

    def __init__(self, client: HaltgateChatCompletionClient) -> None:
        self.client = client

    async def _drop(self, message: Any) -> bool:
        if type(message).__module__.startswith(TEAM_PROTOCOL_MODULE):
            return False
        return await self.client.current_halt() is not None

    async def on_send(self, message: Any, *, message_context: MessageContext,
                      recipient: AgentId) -> Any:  # fmt: skip
        return DropMessage if await self._drop(message) else message

    async def on_publish(self, message: Any, *, message_context: MessageContext) -> Any:
        return DropMessage if await self._drop(message) else message


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
    inner = OpenAIChatCompletionClient(model=model, base_url=base_url(alias, path, url=url),
                                       **kwargs)  # fmt: skip
    return HaltgateChatCompletionClient(inner, on_warning=on_warning, sidecar=view_client(url))
