"""What the framework integrations share: budget warnings seen, the run's halt, local mode.

Both :mod:`haltgate.sdk.langchain` and :mod:`haltgate.sdk.autogen` report warnings once per
change and remember the last terminal halt, so that a framework's retry loop cannot keep
hammering a halted run. The remembered halt *follows the sidecar*:

* a periodic refusal (``retry_after``: an hourly or daily budget) is raised again without a
  request until its ``retry_after`` has passed, then the next call goes out;
* any other halt is raised again only while the sidecar's view of the run
  (``GET /haltgate/v1/self``, :class:`~haltgate.sdk.client.SidecarClient`) still says the
  run is halted: after a lift or a reset the next call goes out. When the view cannot be
  read, the halt is kept (the sidecar would refuse anyway);
* with an in-process governor (``local=``) nothing is remembered: it decides every call.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from haltgate.sdk.client import SidecarClient, halted_in
from haltgate.sdk.errors import HaltError, HaltgateError, SidecarError, remember

WarningCallback = Callable[[tuple[str, ...]], None]

PLACEHOLDER_API_KEY = "unused-behind-haltgate"
VIEW_TIMEOUT_SECONDS = 2.0
"""Bound on asking the sidecar whether a remembered halt still holds (it is local)."""


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token usage of one model call as a framework reports it (for local mode)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0


class InProcessBudget(Protocol):
    """An in-process governor the integrations can drive without a sidecar (bypassable).

    ``haltgate.governance.inprocess.LocalGovernance`` of the main ``haltgate`` distribution
    is one; the SDK itself does not depend on it. ``reserve`` raises a refusal (anything
    :func:`~haltgate.sdk.errors.find_haltgate_error` recognises) or returns a call id.
    """

    warnings: tuple[str, ...]

    def reserve(self, *, kind: str, target: str, payload: Any, model: str | None = None,
                tool: str | None = None, max_input_tokens: int = 0,
                max_output_tokens: int = 0) -> str: ...  # fmt: skip

    def settle(self, call_id: str, *, ok: bool, usage: TokenUsage | None = None,
               result: Any = None,
               error: BaseException | str | None = None) -> None: ...  # fmt: skip


class HaltTracker:
    """Mixin: ``warnings`` (the last budget warning dimensions) and ``halt``."""

    _log: logging.Logger
    on_warning: WarningCallback | None
    warnings: tuple[str, ...]
    halt: HaltgateError | None
    local: InProcessBudget | None
    sidecar: SidecarClient | None
    _halt_at: float = 0.0
    clock: Callable[[], float] = staticmethod(time.monotonic)
    """Seconds, monotonic: when a ``retry_after`` has passed (replaceable in tests)."""

    def _warn(self, dims: tuple[str, ...]) -> None:
        if dims and dims != self.warnings:
            self._log.warning("haltgate budget warning: %s", ", ".join(dims))
            if self.on_warning is not None:
                self.on_warning(dims)
        self.warnings = dims

    def _remember(self, e: HaltgateError) -> None:
        if isinstance(e, HaltError) and e.terminal:
            self.halt = e
            self._halt_at = self.clock()
            remember(e)

    def _view(self) -> Mapping[str, Any] | None:
        """The sidecar's view of the run, or None when it cannot be read."""
        client = self.sidecar if self.sidecar is not None else view_client(None)
        try:
            return client.status()
        except SidecarError as e:
            self._log.debug("haltgate self view unreadable: %s", e)
            return None

    def _current_halt(self, view: Callable[[], Mapping[str, Any] | None] | None = None
                      ) -> HaltgateError | None:  # fmt: skip
        """The remembered halt if it still holds (see the module doc), else None."""
        halt = self.halt
        if halt is None:
            return None
        if self.local is not None:  # in-process: the local engine decides on the reserve
            self.halt = None
            return None
        if halt.retry_after is not None:
            if self.clock() < self._halt_at + halt.retry_after:
                return halt
        else:
            seen = (view or self._view)()
            if seen is None or halted_in(seen):
                return halt
        self._log.info("haltgate: the run is no longer halted (%s); calls resume", halt.code)
        self.halt = None
        return None

    def _check_halt(self) -> None:
        """Raise the remembered halt if it still holds (synchronous frameworks)."""
        halt = self._current_halt()
        if halt is not None:
            raise halt


def view_client(url: str | None) -> SidecarClient:
    """The client that asks whether a remembered halt still holds (short timeout)."""
    return SidecarClient(url, timeout=VIEW_TIMEOUT_SECONDS)


def default_api_key(kwargs: dict[str, Any]) -> None:
    """Put a placeholder ``api_key`` in an OpenAI client's ``kwargs`` when none is set.

    The SDK insists on a key; behind the sidecar the upstream's credentials decide.
    """
    if "api_key" not in kwargs and not os.environ.get("OPENAI_API_KEY"):
        kwargs["api_key"] = PLACEHOLDER_API_KEY
