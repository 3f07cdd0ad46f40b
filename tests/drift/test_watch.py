"""The sidecar's drift stage with a real Governor, real state files and the real metrics
registry: halts on sustained drift (action halt), persists across restarts, exports gauges."""

from __future__ import annotations

import math
import random
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import generate_latest

from haltgate.governance.drift_policy import BEHAVIOUR_DRIFT, parse_drift
from haltgate.governance.governor import Governor
from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.policy_base import FailureType, RequestKind
from haltgate.governance.request import AgentIdentity, CallView
from haltgate.sidecar.call import Call
from haltgate.sidecar.drift_watch import DriftCollector, DriftWatch, tool_key
from haltgate.sidecar.metrics import SidecarMetrics
from tests.drift.workload import Behaviour, calls

SMALL = {"windowCalls": 50, "minSamples": 500, "sustain": 3}
SLOW = Behaviour().but(log_latency=math.log(4))


def _watch(action: str, governor: Governor | None, path: Path | None = None) -> DriftWatch:
    return DriftWatch(
        parse_drift({**SMALL, "action": action}),
        agent="team-a/w1",
        governor=lambda: governor,
        state_path=path,
    )


def _feed(watch: DriftWatch, behaviour: Behaviour, n: int, rng: random.Random) -> None:
    for i, call in enumerate(calls(behaviour, n, rng)):
        watch.observe(call, 1_000.0 + i)


def test_sustained_drift_halts_the_run_when_the_policy_says_halt() -> None:
    governor = Governor.for_policy(GovernancePolicySpec())
    watch = _watch("halt", governor)
    rng = random.Random(1)
    _feed(watch, Behaviour(), 2_000, rng)
    assert not governor.halted
    _feed(watch, SLOW, 400, rng)
    assert governor.halted
    halt = governor.snapshot(2_000.0)["halt"]
    assert halt["failure_type"] == FailureType.OVERRISK.value
    assert halt["code"] == BEHAVIOUR_DRIFT
    assert "latency" in halt["message"] and "threshold 0.5" in halt["message"]
    assert watch.halts == 1
    # The operator accepts the change: resetting a drift halt forgets the baselines.
    governor.reset(3_000.0, "ops")
    assert watch.on_reset(BEHAVIOUR_DRIFT)
    assert all(s["baseline_samples"] == 0 for s in watch.snapshot()["dimensions"].values())
    assert not watch.on_reset("cost_exhausted")


def test_warn_only_exports() -> None:
    governor = Governor.for_policy(GovernancePolicySpec())
    watch = _watch("warn", governor)
    rng = random.Random(1)
    _feed(watch, Behaviour(), 2_000, rng)
    _feed(watch, SLOW, 400, rng)
    assert not governor.halted and watch.halts == 0
    assert watch.snapshot()["dimensions"]["latency"]["sustained"] is True


def test_state_survives_a_restart_and_a_corrupt_file_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "drift-state"
    watch = _watch("warn", None, path)
    _feed(watch, Behaviour(), 1_234, random.Random(2))
    before = watch.tracker.to_json()
    watch.close()
    again = _watch("warn", None, path)
    assert again.tracker.to_json() == before
    assert again.state_errors == 0
    again.close()
    for slot in tmp_path.glob("drift-state.*"):
        slot.write_bytes(b"HGS1 garbage")
    fresh = _watch("warn", None, path)
    assert fresh.state_errors == 1
    assert fresh.tracker.agents() == []


def test_gauges_carry_the_identity_labels() -> None:
    watch = _watch("warn", None)
    _feed(watch, Behaviour(), 2_000, random.Random(3))
    _feed(watch, SLOW, 400, random.Random(4))
    metrics = SidecarMetrics(namespace="team-a", workload="w1")
    metrics.registry.register(DriftCollector(lambda: watch))
    text = generate_latest(metrics.exposed).decode()
    assert (
        'haltgate_drift_sustained{dimension="latency",namespace="team-a",workload="w1"} 1.0' in text
    )
    assert (
        'haltgate_drift_threshold{dimension="tool_mix",namespace="team-a",workload="w1"} 0.5'
        in text
    )
    assert 'haltgate_drift_score{dimension="latency"' in text
    assert 'haltgate_drift_baseline_samples{dimension="error_rate"' in text
    nothing = SidecarMetrics()
    nothing.registry.register(DriftCollector(lambda: None))
    assert "haltgate_drift" not in generate_latest(nothing.exposed).decode()


def test_tool_keys() -> None:
    assert tool_key("llm", "api.openai.com", None, None) == "llm"
    assert tool_key("mcp", "mcp.example", "files", "read") == "mcp:files/read"
    assert tool_key("http", "search.example", None, None) == "http:search.example"


def _http_call(i: int, host: str) -> Call:
    view = CallView(
        kind=RequestKind.HTTP, method="GET", scheme="https", host=host, port=443, path="/"
    )
    call = Call(str(i), 0.0, 1_000.0 + i, None, AgentIdentity("ns", "w", "p", "r"))  # type: ignore[arg-type]
    call.classified = SimpleNamespace(view=view)  # type: ignore[assignment]
    call.upstream_ok = True
    call.forward_started, call.upstream_done = 1.0, 1.2
    return call


def test_tool_names_are_kept_safe_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "drift-state"
    watch = DriftWatch(
        parse_drift({"windowCalls": 10, "minSamples": 10}),
        agent="ns/w",
        governor=lambda: None,
        state_path=path,
    )
    secret = "ghp_4f8Kd92LmQz7XwR1tY6uV3bN0cP5sA8eJ2hG.example"
    for i in range(10):
        watch.record(_http_call(i, secret), "allow")
    for i in range(500):
        watch.record(_http_call(i, f"host-{i}.example"), "allow")
    watch.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("drift-state.*"))
    assert b"ghp_" not in stored and b"sha256:" in stored
    mix = watch.tracker.to_dict()["agents"]["ns/w"]["tool_mix"]
    assert len(set(mix["shares"]) | set(mix["counts"])) <= 33
    assert "_other" in set(mix["shares"]) | set(mix["counts"])


def test_monitor_mode_counts_the_drift_halt_and_does_not_apply_it() -> None:
    governor = Governor.for_policy(GovernancePolicySpec())
    governor.monitor = True
    counted: list[int] = []
    watch = DriftWatch(
        parse_drift({**SMALL, "action": "halt"}),
        agent="team-a/w1",
        governor=lambda: governor,
        on_would_halt=lambda: counted.append(1),
    )
    rng = random.Random(1)
    _feed(watch, Behaviour(), 2_000, rng)
    _feed(watch, SLOW, 400, rng)
    assert not governor.halted
    assert watch.would_halts == 1 and counted == [1] and watch.halts == 0
