"""HTTP client hooks shared by the OpenAI-based integrations (LangChain, AutoGen).

OpenAI's SDK retries 409, 429 and 5xx answers by itself (twice by default), and it asks
the server first: ``x-should-retry: false`` stops it. haltgate's refusals (429 EXHAUSTION,
409 STAGNATION, 403, 423) are decisions, not congestion: a retry would get the same answer
and only add load and audit noise. The response hook here marks every answer that carries
``x-haltgate-failure-type`` as not retryable, so a halt reaches the agent at once, while a
genuine upstream 5xx or a network error is still retried as the SDK's settings say.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FAILURE_HEADER", "async_no_retry_hook", "no_retry_hook", "openai_http_clients"]

FAILURE_HEADER = "x-haltgate-failure-type"


def no_retry_hook(response: Any) -> None:
    """httpx response hook: haltgate refusals are not retried."""
    if FAILURE_HEADER in response.headers:
        response.headers["x-should-retry"] = "false"


async def async_no_retry_hook(response: Any) -> None:
    """The same hook for async httpx clients."""
    no_retry_hook(response)


def openai_http_clients() -> tuple[Any, Any]:
    """``(sync, async)`` HTTP clients for an OpenAI SDK client, with the no-retry hook.

    Built with the OpenAI SDK's own client classes, so they match the httpx flavour the
    installed ``openai`` uses, with its default timeouts and limits.
    """
    import openai

    sync = openai.DefaultHttpxClient(event_hooks={"response": [no_retry_hook]})
    async_ = openai.DefaultAsyncHttpxClient(event_hooks={"response": [async_no_retry_hook]})
    return sync, async_
