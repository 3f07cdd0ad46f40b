"""``spec.drift``: defaults, per-dimension thresholds, and errors that name their field."""

from __future__ import annotations

import pytest

from haltgate.governance.drift import DIMENSIONS
from haltgate.governance.drift_policy import (
    DriftDimensionName,
    DriftPolicyError,
    drift_settings,
    parse_drift,
)


def test_the_dimension_names_are_the_trackers() -> None:
    assert tuple(d.value for d in DriftDimensionName) == DIMENSIONS


def test_defaults_watch_every_dimension_at_the_common_threshold() -> None:
    drift = parse_drift({})
    assert drift.action == "warn"
    settings = drift_settings(drift)
    assert dict(settings.thresholds) == dict.fromkeys(DIMENSIONS, 0.5)
    assert (settings.window_calls, settings.min_samples, settings.sustain) == (100, 500, 3)


def test_dimensions_narrow_and_override() -> None:
    drift = parse_drift(
        {
            "action": "halt",
            "threshold": 0.7,
            "sustain": 5,
            "windowCalls": 50,
            "minSamples": 50,
            "baselineWindows": 40,
            "dimensions": [{"name": "tool_mix", "threshold": 1.2}, {"name": "error_rate"}],
        }
    )
    settings = drift_settings(drift)
    assert dict(settings.thresholds) == {"tool_mix": 1.2, "error_rate": 0.7}
    assert (settings.window_calls, settings.baseline_windows, settings.sustain) == (50, 40, 5)


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"action": "stop"}, "spec.drift.action"),
        ({"sustain": 0}, "spec.drift.sustain"),
        ({"threshold": -1}, "spec.drift.threshold"),
        ({"windowCalls": 5}, "spec.drift.windowCalls"),
        ({"minSamples": 100, "windowCalls": 200}, "spec.drift.minSamples"),
        ({"dimensions": []}, "spec.drift.dimensions"),
        ({"dimensions": [{"name": "mood"}]}, "spec.drift.dimensions[0].name"),
        (
            {"dimensions": [{"name": "latency", "threshold": 0}]},
            "spec.drift.dimensions[0].threshold",
        ),
        (
            {"dimensions": [{"name": "latency"}, {"name": "latency"}]},
            "spec.drift.dimensions[1].name",
        ),
        ({"sustian": 3}, "spec.drift.sustian"),
    ],
)
def test_bad_input_names_the_field(doc: dict[str, object], path: str) -> None:
    with pytest.raises(DriftPolicyError) as info:
        parse_drift(doc)
    paths = [p for p, _ in info.value.problems]
    assert path in paths, paths
    assert path in str(info.value)


def test_admission_validation_names_the_drift_fields() -> None:
    from haltgate.governance.validation import validate_document

    doc = {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "p"},
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "drift": {
                "windowCalls": 200,
                "minSamples": 100,
                "dimensions": [{"name": "latency"}, {"name": "latency"}],
            },
        },
    }
    errors = {str(i) for i in validate_document(doc).errors}
    assert errors == {
        "spec.drift.minSamples: must be >= windowCalls (200): the baseline needs one full window",
        "spec.drift.dimensions[1].name: duplicate dimension 'latency'",
    }
    doc["spec"]["drift"] = {"action": "halt"}  # type: ignore[index]
    result = validate_document(doc)
    assert result.ok
    assert result.document.spec.drift.action == "halt"  # type: ignore[union-attr]
