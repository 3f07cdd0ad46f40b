"""The sidecar's drift stage: feeds the drift tracker with each finished call, persists its
state next to the budget state, halts the run on sustained drift when the policy says so,
and exports the drift gauges at scrape time.

The statistics are :mod:`haltgate.governance.drift`'s; the policy model is
:mod:`haltgate.governance.drift_policy`'s. This module only connects them to the sidecar:
it knows the Governor (to halt) and Prometheus (to export), the tracker knows neither.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from haltgate.governance.audit.redact import state_key
from haltgate.governance.drift import (
    OTHER_TOOL,
    CallObservation,
    DriftTracker,
    WindowScore,
)
from haltgate.governance.drift_policy import BEHAVIOUR_DRIFT, Drift, drift_settings
from haltgate.governance.drift_stats import DriftStateError
from haltgate.governance.governor import StateFile
from haltgate.governance.policy_base import FailureType
from haltgate.sidecar.call import Call

__all__ = ["DriftCollector", "DriftWatch", "observation_of", "tool_key"]

log = logging.getLogger("haltgate.sidecar.drift")

STATE_FILE = "drift-state"
"""Name of the drift state's slot files in the state directory (``drift-state.0``/``.1``)."""


MAX_KEY_CACHE = 256
"""Tool keys whose on-disk form is remembered (checking a key for secrets costs more than
the rest of the stage)."""


def tool_key(kind: str, host: str | None, server: str | None, tool: str | None) -> str:
    """The tool-mix category of a call: ``llm``, ``mcp:<server>/<tool>``, ``http:<host>``.

    LLM calls are one category whatever the model: a model change shows in the cost and
    token dimensions. MCP messages other than ``tools/call`` count under their method."""
    if kind == "llm":
        return "llm"
    if kind == "mcp":
        return f"mcp:{server or host or '?'}/{tool or '?'}"
    if kind == "http":
        return f"http:{server or host or '?'}"
    return kind or "unknown"


def observation_of(call: Call, decision: str) -> CallObservation:
    """What a finished call tells the tracker (``decision``: allow, deny or error).

    Upstream figures count only for calls that were forwarded; cost and tokens only for
    answers that succeeded (a failed call is not billed: its zero would read as cheap)."""
    view = call.classified.view if call.classified is not None else None
    kind = call.kind_label
    tool = None
    if view is not None:
        tool = view.tool_calls[0].name if view.tool_calls else view.mcp_method
    key = tool_key(
        kind, view.host if view is not None else None, view.upstream if view else None, tool
    )
    forwarded = call.upstream_ok is not None
    ok = call.upstream_ok is True
    latency = None
    if forwarded and call.forward_started and call.upstream_done:
        latency = call.upstream_done - call.forward_started
    return CallObservation(
        tool=key,
        refused=decision == "deny",
        error=(not ok) if forwarded else None,
        latency_s=latency,
        cost_usd=call.cost_usd if ok else None,
        tokens=call.tokens if ok else None,
    )


class DriftWatch:
    """Drift detection for the one agent a sidecar governs.

    ``governor()`` gives the current Governor (``None``: no budget engine; a halt is then
    not possible and ``action: halt`` only warns). ``state_path`` (without the slot
    suffix) keeps the tracker's state; ``None`` keeps it in memory only.
    """

    def __init__(
        self,
        drift: Drift,
        *,
        agent: str,
        governor: Callable[[], Any],
        state_path: str | os.PathLike[str] | None = None,
        fsync: bool = False,
        on_would_halt: Callable[[], None] | None = None,
    ) -> None:
        """``on_would_halt`` is called instead of halting when the Governor is in monitor
        mode (``spec.enforcement: monitor``: the halt is counted, not applied)."""
        self.drift = drift
        self.agent = agent
        self._governor = governor
        self._file = None if state_path is None else StateFile(state_path, fsync=fsync)
        self.state_errors = 0
        """State reads or writes that failed (logged; the tracker keeps running)."""
        self.halts = 0
        """Halts this watch asked for."""
        self.would_halts = 0
        """Halts not applied because the policy is in monitor mode."""
        self._on_would_halt = on_would_halt
        self._keys: dict[str, str] = {}
        self.tracker = self._load(drift)

    # ------------------------------------------------------------------ policy

    def update_policy(self, drift: Drift) -> None:
        """A reloaded policy: new settings, baselines kept (see ``update_settings``)."""
        self.drift = drift
        self.tracker.update_settings(drift_settings(drift))
        self._save()

    # ------------------------------------------------------------------ calls

    def record(self, call: Call, decision: str) -> list[WindowScore]:
        """Record a finished call of the pipeline (see :func:`observation_of`)."""
        obs = observation_of(call, decision)
        safe = self._keys.get(obs.tool)
        if safe is None:
            if not self.tracker.admits_tool(self.agent, obs.tool):
                safe = OTHER_TOOL  # the tool mix is full: no need to check the name
            else:
                # Tool names come from the agent: one holding a secret is kept as a digest
                # (the check costs ~50 us: done once per name, names are capped).
                safe = state_key(obs.tool) or OTHER_TOOL
                if len(self._keys) < MAX_KEY_CACHE:
                    self._keys[obs.tool] = safe
        obs.tool = safe
        return self.observe(obs, call.ts)

    def observe(self, call: CallObservation, ts: float) -> list[WindowScore]:
        """Record one finished call. When a window completes, the state is saved; a
        sustained drift under ``action: halt`` halts the run (OVERRISK,
        ``behaviour_drift``). Returns the windows the call completed."""
        windows = self.tracker.observe(self.agent, call)
        if not windows:
            return windows
        self._save()
        if any(w.onset for w in windows):
            log.warning("%s (action: %s)", self.describe(), self.drift.action)
            if self.drift.action == "halt":
                self._halt(ts)
        return windows

    def _halt(self, ts: float) -> None:
        governor = self._governor()
        if governor is None or governor.halted:
            return
        if getattr(governor, "monitor", False):
            # Monitor mode: a halt derived from the agent's own behaviour is recorded, not
            # applied (like the engine's budget halts; docs/rollout.md).
            self.would_halts += 1
            if self._on_would_halt is not None:
                self._on_would_halt()
            return
        governor.halt(ts, FailureType.OVERRISK, BEHAVIOUR_DRIFT, self.describe())
        self.halts += 1

    def describe(self) -> str:
        """The halt message: every dimension in sustained drift with its score."""
        scores = {dim: score for _, dim, score in self.tracker.scores()}
        thresholds = self.tracker.settings.thresholds
        parts = [
            f"{dim} {scores.get(dim, 0.0):.2f} (threshold {thresholds[dim]:g})"
            for dim in self.tracker.sustained(self.agent)
        ]
        return (
            "behaviour drift sustained for "
            f"{self.tracker.settings.sustain} windows: " + ", ".join(parts or ["?"])
        )

    # ------------------------------------------------------------------ operator

    def rebaseline(self) -> None:
        """Forget the baselines (an operator accepted the new behaviour)."""
        self.tracker.rebaseline(self.agent)
        self._save()

    def on_reset(self, halt_code: str | None) -> bool:
        """An operator reset the run; a reset of a drift halt also rebaselines. True when
        it did."""
        if halt_code != BEHAVIOUR_DRIFT:
            return False
        self.rebaseline()
        return True

    def snapshot(self) -> dict[str, Any]:
        """The drift state for the admin API (JSON-able)."""
        scores = {dim: score for _, dim, score in self.tracker.scores()}
        samples = {dim: n for _, dim, n in self.tracker.baseline_samples()}
        sustained = set(self.tracker.sustained(self.agent))
        s = self.tracker.settings
        return {
            "action": self.drift.action,
            "window_calls": s.window_calls,
            "sustain": s.sustain,
            "min_samples": s.min_samples,
            "dimensions": {
                dim: {
                    "score": scores.get(dim),
                    "threshold": threshold,
                    "baseline_samples": samples.get(dim, 0),
                    "sustained": dim in sustained,
                }
                for dim, threshold in sorted(s.thresholds.items())
            },
            "state_errors": self.state_errors,
        }

    # ------------------------------------------------------------------ persistence

    def close(self) -> None:
        """Save the state (open windows included) and close the slot files."""
        self._save()
        if self._file is not None:
            self._file.close()

    def _save(self) -> None:
        if self._file is None:
            return
        try:
            self._file.write(self.tracker.to_json())
        except OSError as e:
            # Drift is advisory: a disk problem must not refuse the agent's calls.
            self.state_errors += 1
            log.error("cannot save the drift state: %s", e)

    def _load(self, drift: Drift) -> DriftTracker:
        settings = drift_settings(drift)
        if self._file is None:
            return DriftTracker(settings)
        try:
            data = self._file.read()
            if data is None:
                return DriftTracker(settings)
            return DriftTracker.from_json(data, settings)
        except (OSError, ValueError) as e:
            # DriftStateError is a ValueError. Start over: halting for a disk problem
            # would punish the agent, and the baselines come back after the warm-up.
            self.state_errors += 1
            kind = "unreadable" if not isinstance(e, DriftStateError) else "invalid"
            log.error("drift state %s %s (%s); baselines start over", self._file.path, kind, e)
            return DriftTracker(settings)


class DriftCollector(Collector):
    """The drift gauges, read from the watch when Prometheus scrapes.

    ``watch()`` gives the current :class:`DriftWatch` (``None``: the policy has no
    ``spec.drift``, nothing is exported). Register it in ``SidecarMetrics.registry``: the
    identity labels (namespace, workload, policy) are added there."""

    def __init__(self, watch: Callable[[], DriftWatch | None]) -> None:
        self._watch = watch

    def describe(self) -> Iterable[Metric]:
        return []  # dynamic families: never described ahead

    def collect(self) -> Iterable[Metric]:
        watch = self._watch()
        if watch is None:
            return
        tracker = watch.tracker
        agent = watch.agent
        settings = tracker.settings
        score = _family(
            "haltgate_drift_score",
            "Score of the last complete window: its "
            "shift from the baseline in per-call standard deviations, sampling "
            "noise removed (about 0 when steady).",
        )
        threshold = _family(
            "haltgate_drift_threshold",
            "Score at or above which a window of the dimension is drifted (spec.drift).",
        )
        consecutive = _family(
            "haltgate_drift_consecutive_windows",
            "Drifted windows in a row (0 when the last window was under the threshold).",
        )
        sustained = _family(
            "haltgate_drift_sustained",
            "1 while the dimension is in "
            "sustained drift (spec.drift.sustain windows in a row), else 0.",
        )
        samples = _family(
            "haltgate_drift_baseline_samples",
            "Observations in the dimension's baseline (scored from spec.drift.minSamples on).",
        )
        in_drift = set(tracker.sustained(agent))
        for a, dim, value in tracker.scores():
            if a == agent:
                score.add_metric([dim], value)
        for a, dim, n in tracker.baseline_samples():
            if a == agent:
                samples.add_metric([dim], float(n))
        runs = tracker.consecutive(agent)
        for dim, limit in sorted(settings.thresholds.items()):
            threshold.add_metric([dim], limit)
            consecutive.add_metric([dim], float(runs.get(dim, 0)))
            sustained.add_metric([dim], 1.0 if dim in in_drift else 0.0)
        yield from (score, threshold, consecutive, sustained, samples)


def _family(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=["dimension"])
