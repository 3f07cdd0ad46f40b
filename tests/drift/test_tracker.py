"""The drift tracker: steady workloads stay quiet, behaviour changes are found and sustained,
memory stays bounded, state survives a JSON round trip."""

from __future__ import annotations

import math
import random
from types import MappingProxyType

import orjson
import pytest

from haltgate.governance.drift import (
    DIMENSIONS,
    OTHER_TOOL,
    CallObservation,
    DriftSettings,
    DriftTracker,
    WindowScore,
)
from haltgate.governance.drift_stats import DriftStateError
from tests.drift.workload import Behaviour, calls

STEADY = Behaviour()
WARM_UP_CALLS = 2_000
"""Enough for every dimension's baseline (LLM-only ones see ~60% of the calls)."""


def feed(
    tracker: DriftTracker, behaviour: Behaviour, n: int, rng: random.Random
) -> list[WindowScore]:
    out: list[WindowScore] = []
    for call in calls(behaviour, n, rng):
        out.extend(tracker.observe("agent-a", call))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_steady_workload_never_drifts(seed: int) -> None:
    tracker = DriftTracker()
    windows = feed(tracker, STEADY, 40_000, random.Random(seed))
    scored = [w for w in windows if w.score > 0 or w.consecutive]
    assert len(windows) > 1_500
    assert not [w for w in windows if w.onset]
    assert tracker.sustained("agent-a") == []
    worst = max(w.score for w in scored) if scored else 0.0
    assert worst < 0.5, worst
    # Noise is taken out: a typical steady window scores well under a small effect (0.2).
    typical = sorted(w.score for w in windows)[len(windows) // 2]
    assert typical < 0.1, typical


CHANGES = {
    "cost_per_call": STEADY.but(log_cost=STEADY.log_cost + math.log(3)),
    "tool_mix": STEADY.but(
        tools={
            "llm": 0.35,
            "mcp:files/read": 0.15,
            "http:search.example": 0.1,
            "mcp:mail/send": 0.4,
        }
    ),
    "error_rate": STEADY.but(error_rate=0.3),
    "refusal_rate": STEADY.but(refusal_rate=0.25),
    "latency": STEADY.but(log_latency=math.log(3)),
}
EXPECTED = {
    "cost_per_call": {"cost_per_call", "tokens_per_call"},
    "tool_mix": {"tool_mix"},
    "error_rate": {"error_rate"},
    "refusal_rate": {"refusal_rate"},
    "latency": {"latency"},
}


@pytest.mark.parametrize("changed", sorted(CHANGES))
def test_a_behaviour_change_raises_its_score_until_sustained(changed: str) -> None:
    rng = random.Random(7)
    tracker = DriftTracker()
    before = feed(tracker, STEADY, WARM_UP_CALLS * 2, rng)
    assert not [w for w in before if w.drifted]
    after = feed(tracker, CHANGES[changed], 1_500, rng)
    onsets = {w.dimension for w in after if w.onset}
    assert onsets == EXPECTED[changed]
    first = next(w for w in after if w.onset and w.dimension == changed)
    assert first.sustained and first.consecutive == 3
    assert first.score >= first.threshold
    if changed in ("cost_per_call", "latency"):
        assert first.direction == 1
    assert changed in tracker.sustained("agent-a")


def test_the_onset_is_reported_once_per_episode_and_the_run_resets() -> None:
    rng = random.Random(11)
    tracker = DriftTracker()
    feed(tracker, STEADY, WARM_UP_CALLS, rng)
    shifted = STEADY.but(log_latency=math.log(4))
    windows = [w for w in feed(tracker, shifted, 1_000, rng) if w.dimension == "latency"]
    assert [w.consecutive for w in windows[:5]] == [1, 2, 3, 4, 5]
    assert [w.onset for w in windows[:5]] == [False, False, True, False, False]
    # Back to normal: the next window is not drifted and the run starts over.
    back = [w for w in feed(tracker, STEADY, 300, rng) if w.dimension == "latency"]
    assert back[-1].consecutive == 0 and not back[-1].sustained
    assert "latency" not in tracker.sustained("agent-a")


def test_nothing_is_scored_during_the_warm_up() -> None:
    settings = DriftSettings(window_calls=10, min_samples=50)
    tracker = DriftTracker(settings)
    wild = STEADY.but(error_rate=0.5, refusal_rate=0.5)
    rng = random.Random(3)
    windows = [w for w in feed(tracker, wild, 50, rng) if w.dimension == "refusal_rate"]
    assert len(windows) == 5 and all(w.score == 0.0 for w in windows)
    assert ("agent-a", "refusal_rate") not in {(a, d) for a, d, _ in tracker.scores()}
    samples = {d: n for _, d, n in tracker.baseline_samples()}
    assert samples["refusal_rate"] == 50
    later = [w for w in feed(tracker, wild, 10, rng) if w.dimension == "refusal_rate"]
    assert len(later) == 1
    assert ("agent-a", "refusal_rate") in {(a, d) for a, d, _ in tracker.scores()}


def test_an_identical_window_scores_zero_and_a_new_tool_counts_fully() -> None:
    settings = DriftSettings(window_calls=10, min_samples=10, baseline_windows=2)
    tracker = DriftTracker(settings)
    pattern = ["llm"] * 5 + ["mcp:a"] * 5
    for tool in pattern:
        tracker.observe("x", CallObservation(tool, refused=False))
    same = [w for t in pattern for w in tracker.observe("x", CallObservation(t, refused=False))]
    mix = next(w for w in same if w.dimension == "tool_mix")
    assert mix.score == 0.0
    novel = [w for _ in range(10) for w in tracker.observe("x", CallObservation("mcp:new", False))]
    mix = next(w for w in novel if w.dimension == "tool_mix")
    # Everything moved to a tool the baseline never saw: 2*||sqrt q - sqrt p|| = 2*sqrt(2).
    assert mix.score == pytest.approx(2 * math.sqrt(2), rel=0.05)


def test_memory_is_bounded_in_tools_and_agents() -> None:
    settings = DriftSettings(window_calls=10, min_samples=10, max_tools=8, max_agents=3)
    tracker = DriftTracker(settings)
    for i in range(5_000):
        tracker.observe(f"agent-{i % 5}", CallObservation(f"http:host-{i}", refused=False))
    assert tracker.agents() == ["agent-0", "agent-1", "agent-2"]
    assert tracker.untracked_calls == 2_000
    doc = tracker.to_dict()
    for agent in doc["agents"].values():
        mix = agent["tool_mix"]
        keys = set(mix["shares"]) | set(mix["counts"])
        assert len(keys) <= settings.max_tools + 1
        assert OTHER_TOOL in keys
    long_name = "mcp:" + "x" * 1_000
    tracker.observe("agent-0", CallObservation(long_name, refused=False))
    assert all(len(k) <= 128 for k in tracker.to_dict()["agents"]["agent-0"]["tool_mix"]["counts"])


def test_state_round_trips_mid_window_and_continues_identically() -> None:
    rng_a, rng_b = random.Random(5), random.Random(5)
    straight = DriftTracker()
    restarted = DriftTracker()
    feed(straight, STEADY, 3_333, rng_a)
    feed(restarted, STEADY, 3_333, rng_b)
    restarted = DriftTracker.from_json(restarted.to_json())
    assert restarted.to_json() == straight.to_json()
    shifted = STEADY.but(error_rate=0.3)
    a = feed(straight, shifted, 800, rng_a)
    b = feed(restarted, shifted, 800, rng_b)
    assert a == b
    assert "error_rate" in restarted.sustained("agent-a")


def _valid_state() -> dict[str, object]:
    tracker = DriftTracker(DriftSettings(window_calls=10, min_samples=10))
    feed(tracker, STEADY, 95, random.Random(1))
    return tracker.to_dict()


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.update(version=9), "version"),
        (lambda d: d.update(agents=[]), "agents"),
        (
            lambda d: d["agents"]["agent-a"]["latency"].update(mean="x"),
            "agents.agent-a.latency.mean",
        ),
        (
            lambda d: d["agents"]["agent-a"]["latency"].update(var=-1.0),
            "agents.agent-a.latency.var",
        ),
        (
            lambda d: d["agents"]["agent-a"]["tool_mix"].update(wn=10_000),
            "agents.agent-a.tool_mix.wn",
        ),
        (
            lambda d: d["agents"]["agent-a"]["error_rate"].update(n=-3),
            "agents.agent-a.error_rate.n",
        ),
        (lambda d: d["agents"]["agent-a"]["tool_mix"].update(shares=[1]), "tool_mix.shares"),
    ],
)
def test_a_bad_state_names_its_field(edit: object, field: str) -> None:
    doc = _valid_state()
    edit(doc)  # type: ignore[operator]
    with pytest.raises(DriftStateError, match=field.replace(".", r"\.")):
        DriftTracker.from_json(orjson.dumps(doc))


def test_non_json_state_is_a_typed_error() -> None:
    with pytest.raises(DriftStateError, match="not JSON"):
        DriftTracker.from_json(b"{half")


def test_non_finite_observations_are_ignored() -> None:
    tracker = DriftTracker(DriftSettings(window_calls=10, min_samples=10))
    for _ in range(30):
        tracker.observe("a", CallObservation("llm", False, False, math.inf, math.nan, 10))
    doc = tracker.to_dict()["agents"]["a"]
    assert doc["latency"]["n"] == 0 and doc["cost_per_call"]["n"] == 0
    assert doc["tokens_per_call"]["n"] == 30
    DriftTracker.from_json(tracker.to_json())


def test_settings_changes_keep_baselines_and_rebaseline_forgets() -> None:
    tracker = DriftTracker()
    feed(tracker, STEADY, WARM_UP_CALLS, random.Random(9))
    kept = tracker.to_dict()["agents"]["agent-a"]["latency"]
    tracker.update_settings(
        DriftSettings(window_calls=200, thresholds=MappingProxyType({"latency": 0.8}))
    )
    doc = tracker.to_dict()["agents"]["agent-a"]
    assert set(doc) == {"latency"} and doc["latency"] == kept
    tracker.update_settings(DriftSettings())
    assert set(tracker.to_dict()["agents"]["agent-a"]) == set(DIMENSIONS)
    tracker.rebaseline("agent-a")
    assert all(n == 0 for _, _, n in tracker.baseline_samples())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_calls": 0}, "window_calls"),
        ({"sustain": 0}, "sustain"),
        ({"thresholds": {"mood": 1.0}}, "thresholds.mood"),
        ({"thresholds": {"latency": 0.0}}, "thresholds.latency"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DriftSettings(**kwargs)  # type: ignore[arg-type]


def _exact_windows(
    tracker: DriftTracker, window: list[CallObservation], n: int
) -> list[WindowScore]:
    return [w for _ in range(n) for call in window for w in tracker.observe("x", call)]


def test_the_figures_docs_drift_md_quotes() -> None:
    """docs/drift.md: 2% -> 30% errors scores about 0.85; a new tool taking 40% of the
    calls about 1.3; tripling a cost of log-sd 0.6 about 1.8."""
    settings = DriftSettings(window_calls=100, min_samples=100)
    ok, failed = CallObservation("llm", False, False), CallObservation("llm", False, True)
    tracker = DriftTracker(settings)
    _exact_windows(tracker, [failed] * 2 + [ok] * 98, 5)
    last = _exact_windows(tracker, [failed] * 30 + [ok] * 70, 1)
    assert next(w for w in last if w.dimension == "error_rate").score == pytest.approx(
        0.86, abs=0.01
    )

    tracker = DriftTracker(settings)
    mix = ["llm"] * 60 + ["mcp:files/read"] * 25 + ["http:search"] * 15
    _exact_windows(tracker, [CallObservation(t, False) for t in mix], 5)
    new = ["llm"] * 36 + ["mcp:files/read"] * 15 + ["http:search"] * 9 + ["mcp:mail/send"] * 40
    last = _exact_windows(tracker, [CallObservation(t, False) for t in new], 1)
    assert next(w for w in last if w.dimension == "tool_mix").score == pytest.approx(1.33, abs=0.02)

    tracker = DriftTracker(settings)
    # A window whose log-costs have mean -6 and sd 0.6 exactly, then the same tripled.
    costs = [math.exp(-6 + 0.6 * (1 if i % 2 else -1)) for i in range(100)]
    _exact_windows(tracker, [CallObservation("llm", False, cost_usd=c) for c in costs], 5)
    tripled = [CallObservation("llm", False, cost_usd=3 * c) for c in costs]
    last = _exact_windows(tracker, tripled, 1)
    # log(c + 1e-6) shifts by slightly less than log 3 for these small costs.
    assert next(w for w in last if w.dimension == "cost_per_call").score == pytest.approx(
        1.8, abs=0.05
    )


def test_longer_windows_find_a_smaller_change_every_time() -> None:
    """docs/drift.md: 2% -> 20% errors (about 0.6) is found reliably with 300-call windows."""
    window = 300
    for seed in range(5):
        rng = random.Random(seed)
        tracker = DriftTracker(DriftSettings(window_calls=window, min_samples=5 * window))
        assert not [w for w in feed(tracker, STEADY, 12 * window, rng) if w.onset]
        after = feed(tracker, STEADY.but(error_rate=0.2), 8 * window, rng)
        assert {w.dimension for w in after if w.onset} == {"error_rate"}, seed
