"""Properties of the drift tracker over arbitrary call sequences (hypothesis, bounded)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from haltgate.governance.drift import CallObservation, DriftSettings, DriftTracker

SETTINGS = DriftSettings(window_calls=5, min_samples=10, baseline_windows=3, sustain=2, max_tools=4)

finite = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
observations = st.builds(
    CallObservation,
    tool=st.sampled_from(["llm", "mcp:a/b", "http:x", "http:y", "http:z", "mcp:c/d", ""]),
    refused=st.booleans(),
    error=st.none() | st.booleans(),
    latency_s=st.none() | finite | st.just(math.inf),
    cost_usd=st.none() | finite | st.just(math.nan),
    tokens=st.none() | finite,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(observations, max_size=80), st.integers(min_value=0, max_value=80))
def test_a_restart_anywhere_changes_nothing(calls: list[CallObservation], cut: int) -> None:
    straight = DriftTracker(SETTINGS)
    restarted = DriftTracker(SETTINGS)
    a = [w for c in calls for w in straight.observe("x", c)]
    b = [w for c in calls[:cut] for w in restarted.observe("x", c)]
    restarted = DriftTracker.from_json(restarted.to_json(), SETTINGS)
    b += [w for c in calls[cut:] for w in restarted.observe("x", c)]
    assert a == b
    assert straight.to_json() == restarted.to_json()


@settings(max_examples=60, deadline=None)
@given(st.lists(observations, max_size=120))
def test_scores_are_finite_and_state_bounded(calls: list[CallObservation]) -> None:
    tracker = DriftTracker(SETTINGS)
    for c in calls:
        for w in tracker.observe("x", c):
            assert math.isfinite(w.score) and w.score >= 0
            assert w.sustained == (w.consecutive >= SETTINGS.sustain)
    doc = tracker.to_dict()
    for dims in doc["agents"].values():
        mix = dims["tool_mix"]
        assert len(set(mix["shares"]) | set(mix["counts"])) <= SETTINGS.max_tools + 1
        assert all(0 <= v <= 1 + 1e-9 for v in mix["shares"].values())
