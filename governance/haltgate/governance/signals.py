"""Per-call progress signals: the one definition the EmoCore adapter and the SDK share.

From three facts of a settled call (its request fingerprint, its tool or model, and the
digest of its result, or that it failed) and the fingerprints remembered from the last
:data:`SEEN_WINDOW` calls:

==============  ==========================================================================
signal          value
==============  ==========================================================================
``reward``      1.0 when the call made progress: ok and a result not seen in the window, or
                ok, no result digest given and the call is novel; else 0.0
``novelty``     1.0 when the fingerprint or the target was not seen in the window, else 0.0
``difficulty``  1.0 for a failed call, else 0.0
==============  ==========================================================================

Pure and deterministic (no clock, no I/O): the remembered window is an immutable tuple
that the caller keeps (in the engine state for the adapter, in memory for the SDK).
No emocore import: the SDK uses this without the extra.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["SEEN_WINDOW", "ProgressSignals", "progress_signals"]

SEEN_WINDOW = 32
"""Fingerprints, targets and results remembered for the novelty and reward signals."""


class ProgressSignals(NamedTuple):
    """The signals of one settled call and the window that remembers it."""

    reward: float
    novelty: float
    difficulty: float
    repeat: bool
    """The request fingerprint was already in the window (a repeated call)."""
    seen: tuple[str, ...]
    """The window after this call (oldest first, at most ``window`` entries)."""


def progress_signals(
    seen: tuple[str, ...],
    fingerprint: str | None,
    target: str | None,
    ok: bool,
    result: str | None,
    window: int = SEEN_WINDOW,
) -> ProgressSignals:
    """Signals of a settled call given the window ``seen`` of earlier calls.

    ``target`` (tool or model) is remembered as ``tool:<name>``, a result as
    ``result:<digest>`` (only for calls that succeeded), so the three kinds never collide.
    """
    tool_key = None if target is None else f"tool:{target}"
    repeat = fingerprint is not None and fingerprint in seen
    novel = (fingerprint is not None and not repeat) or (
        tool_key is not None and tool_key not in seen
    )
    result_key = None if not ok or result is None else f"result:{result}"
    if ok:
        progress = (result_key is not None and result_key not in seen) or (result is None and novel)
    else:
        progress = False
    for item in (fingerprint, tool_key, result_key):
        if item is not None and item not in seen:
            seen = (*seen, item)[-window:]
    return ProgressSignals(
        reward=1.0 if progress else 0.0,
        novelty=1.0 if novel else 0.0,
        difficulty=0.0 if ok else 1.0,
        repeat=repeat,
        seen=seen,
    )
