"""Progress signals derived from observed calls, for in-process governance.

The budget engine detects stagnation and feeds EmoCore from three facts per call, which the
sidecar derives from the bytes it relays and the in-process governor
(:mod:`haltgate.governance.inprocess`) derives here from what the framework hands the SDK's
callbacks:

* the **request fingerprint** (``Reserve.fingerprint``): the same call gives the same value,
  so repeated calls (``identicalRetries``) and calls that bring nothing new are seen;
* the **result fingerprint** (``Settle.result_fingerprint``): a new result is progress
  (``stagnation`` window, EmoCore ``reward``);
* the **error fingerprint** (``Settle.error_fingerprint``): failed calls (EmoCore
  ``difficulty``, ``consecutiveFailures``).

The engine (``haltgate.governance.engine``) and the EmoCore adapter
(``haltgate.governance.emocore_adapter``) turn these into decisions; nothing here decides.
:class:`SignalTracker` computes the same per-call signals the adapter documents (reward,
novelty, difficulty) plus rolling rates over a window, so an agent or a dashboard can see
why a run is heading for STAGNATION before it halts.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from haltgate.governance.signals import SEEN_WINDOW, progress_signals

__all__ = [
    "CallSignals",
    "SignalTracker",
    "error_fingerprint",
    "request_fingerprint",
    "result_fingerprint",
]


def _canonical(obj: Any) -> bytes:
    # Sorted keys and a str fallback: framework objects (messages, pydantic models) that
    # are not plain JSON still give a stable digest.
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                        default=str)  # fmt: skip


def request_fingerprint(kind: str, target: str, payload: Any) -> str:
    """Identity of a call: kind (``llm``, ``tool``), target (model or tool) and its input."""
    h = hashlib.sha256(f"{kind} {target}\n".encode())
    h.update(_canonical(payload))
    return h.hexdigest()


def result_fingerprint(result: Any) -> str:
    """Digest of a call's result (new digest = progress)."""
    return hashlib.blake2b(_canonical(result), digest_size=16).hexdigest()


def error_fingerprint(error: BaseException | str) -> str:
    """Digest of a failure: its type and message (the same failure repeats the digest)."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class CallSignals:
    """Signals of one settled call (all in [0, 1])."""

    reward: float
    """1.0 when the call made progress: ok and a new result (or a new call without result)."""
    novelty: float
    """1.0 for a call (or target) not seen in the window."""
    difficulty: float
    """1.0 for a failed call."""
    error_rate: float
    """Failed calls / calls over the window."""
    repeat_rate: float
    """Calls that repeated a fingerprint of the window / calls over the window."""
    no_progress_streak: int
    """Calls in a row without progress (what the ``stagnation`` budget counts)."""


class SignalTracker:
    """Rolling signals over the last ``window`` calls (bounded memory)."""

    def __init__(self, window: int = SEEN_WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self._seen: tuple[str, ...] = ()
        self._outcomes: deque[tuple[bool, bool]] = deque(maxlen=window)  # (failed, repeat)
        self._streak = 0

    def observe(
        self,
        fingerprint: str,
        *,
        target: str | None = None,
        ok: bool,
        result: str | None = None,
    ) -> CallSignals:
        """Record one settled call and return its signals.

        ``fingerprint``: :func:`request_fingerprint`; ``target``: tool or model name;
        ``result``: :func:`result_fingerprint` of the answer (None if unknown).
        """
        # The same computation as the EmoCore adapter's (haltgate.governance.signals).
        signals = progress_signals(self._seen, fingerprint, target, ok, result, self.window)
        self._seen = signals.seen
        self._outcomes.append((not ok, signals.repeat))
        self._streak = 0 if signals.reward else self._streak + 1
        n = len(self._outcomes)
        return CallSignals(
            reward=signals.reward,
            novelty=signals.novelty,
            difficulty=signals.difficulty,
            error_rate=sum(f for f, _ in self._outcomes) / n,
            repeat_rate=sum(r for _, r in self._outcomes) / n,
            no_progress_streak=self._streak,
        )
