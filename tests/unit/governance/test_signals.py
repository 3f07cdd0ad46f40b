"""The progress signals shared by the EmoCore adapter and the in-process tracker."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from haltgate.governance import signals
from haltgate.governance.signals import SEEN_WINDOW, progress_signals

calls = st.lists(
    st.tuples(
        st.sampled_from(["fp1", "fp2", "fp3"]),
        st.sampled_from([None, "search", "read"]),
        st.booleans(),
        st.sampled_from([None, "r1", "r2"]),
    ),
    max_size=40,
)


def test_one_definition_for_the_adapter_and_the_in_process_tracker() -> None:
    from haltgate.governance import emocore_adapter, traffic_signals

    assert emocore_adapter.progress_signals is signals.progress_signals
    assert traffic_signals.progress_signals is signals.progress_signals


def test_examples() -> None:
    first = progress_signals((), "fp", "search", True, "r1")
    assert (first.reward, first.novelty, first.difficulty, first.repeat) == (1.0, 1.0, 0.0, False)
    again = progress_signals(first.seen, "fp", "search", True, "r1")
    assert (again.reward, again.novelty, again.repeat) == (0.0, 0.0, True)
    new_result = progress_signals(again.seen, "fp", "search", True, "r2")
    assert new_result.reward == 1.0 and new_result.novelty == 0.0
    failed = progress_signals(new_result.seen, "fp9", None, False, "r3")
    assert (failed.reward, failed.novelty, failed.difficulty) == (0.0, 1.0, 1.0)
    assert "result:r3" not in failed.seen  # a failed call's result is not progress later


@settings(max_examples=100, deadline=None)
@given(calls)
def test_in_process_tracker_reports_the_shared_signals(sequence: list[tuple]) -> None:
    from haltgate.governance.traffic_signals import SignalTracker

    tracker = SignalTracker()
    seen: tuple[str, ...] = ()
    streak = 0
    for fp, tool, ok, result in sequence:
        expected = progress_signals(seen, fp, tool, ok, result)
        seen = expected.seen
        got = tracker.observe(fp, target=tool, ok=ok, result=result)
        streak = 0 if expected.reward else streak + 1
        assert (got.reward, got.novelty, got.difficulty) == (
            expected.reward,
            expected.novelty,
            expected.difficulty,
        )
        assert got.no_progress_streak == streak
        assert len(seen) <= SEEN_WINDOW
