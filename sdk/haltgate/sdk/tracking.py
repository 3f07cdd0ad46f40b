"""What the framework integrations share: budget warnings seen and the run's halt.

Both :mod:`haltgate.sdk.langchain` and :mod:`haltgate.sdk.autogen` report warnings once per
change and keep the first terminal halt, so that every later call fails with it at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from haltgate.sdk.errors import HaltError, HaltgateError

WarningCallback = Callable[[tuple[str, ...]], None]

PLACEHOLDER_API_KEY = "unused-behind-haltgate"


class HaltTracker:
    """Mixin: ``warnings`` (the last budget warning dimensions) and ``halt``."""

    _log: logging.Logger
    on_warning: WarningCallback | None
    warnings: tuple[str, ...]
    halt: HaltgateError | None

    def _warn(self, dims: tuple[str, ...]) -> None:
        if dims and dims != self.warnings:
            self._log.warning("haltgate budget warning: %s", ", ".join(dims))
            if self.on_warning is not None:
                self.on_warning(dims)
        self.warnings = dims

    def _remember(self, e: HaltgateError) -> None:
        if isinstance(e, HaltError) and e.terminal:
            self.halt = e


def default_api_key(kwargs: dict[str, Any]) -> None:
    """Put a placeholder ``api_key`` in an OpenAI client's ``kwargs`` when none is set.

    The SDK insists on a key; behind the sidecar the upstream's credentials decide.
    """
    if "api_key" not in kwargs and not os.environ.get("OPENAI_API_KEY"):
        kwargs["api_key"] = PLACEHOLDER_API_KEY
