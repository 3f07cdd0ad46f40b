"""The input tokens an LLM call may use at most: the input side of its reservation.

The body's length in bytes bounds the tokens of the prompt it holds (a token is at least
one byte of text). It does not bound what the provider adds itself: a stored response or
conversation, files, images fetched by URL, server-side tool results. A call that brings
such context in (``Classified.context_ref``) reserves the model's whole context window;
when the window is not known the call is refused (``unknown_context_window``), since no
bound could be reserved. Inline images add a fixed bound each. The model's window, when
known, also caps the body bound: the provider refuses a larger prompt.
"""

from __future__ import annotations

from typing import Final

from haltgate.governance.errors import DeniedError
from haltgate.governance.llm_body import INLINE_IMAGE_TOKENS
from haltgate.governance.policy_base import FailureType
from haltgate.sidecar.budget import Budget
from haltgate.sidecar.classify import Classified

__all__ = ["CODE_UNKNOWN_CONTEXT_WINDOW", "max_input_tokens"]

CODE_UNKNOWN_CONTEXT_WINDOW: Final = "unknown_context_window"


def max_input_tokens(
    classified: Classified, body_bytes: int, budget: Budget, window: int | None
) -> int:
    """Upper bound of the call's input tokens; raises :class:`DeniedError` when the call
    refers to context whose size cannot be bounded. ``window``: the model's context
    window (:meth:`Budget.model_bounds`; ``None``: not known)."""
    model = classified.view.model
    ref = classified.context_ref
    if ref is not None:
        if window is not None:
            return window
        if not budget.meters:
            return body_bytes  # no budget engine: nothing is reserved anyway
        raise DeniedError(
            f"{ref} brings in context the request body does not hold, and the context "
            f"window of model {str(model)[:128]!r} is unknown, so no worst case can be "
            "reserved (set spec.pricing.models.<model>.contextWindow)",
            code=CODE_UNKNOWN_CONTEXT_WINDOW,
            failure_type=FailureType.SAFETY,
        )
    bound = body_bytes + classified.inline_images * INLINE_IMAGE_TOKENS
    return bound if window is None or window >= bound else window
