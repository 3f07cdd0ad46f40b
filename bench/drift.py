"""Drift tracker cost per call, and the size of its state.

Run: ``.venv/bin/python bench/drift.py [--calls N]``

A steady synthetic workload (``tests/drift/workload.py``, 3 tools, 2% errors) is built
first, then fed to :class:`DriftTracker` with the default settings (windows of 100 calls,
six dimensions); printed: CPU microseconds per ``observe`` (window scoring included,
amortised), the same for a tool mix of 32 tools (the cap), and the JSON state size; then
the sidecar's whole drift stage per finished call (``DriftWatch.record``: reading the
pipeline's ``Call``, the tool key's on-disk form, the tracker), state kept in memory.
Timed in the thread's CPU time (robust on a shared machine).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "sidecar")]

from haltgate.governance.drift import DriftTracker  # noqa: E402
from haltgate.governance.drift_policy import parse_drift  # noqa: E402
from haltgate.governance.policy_base import RequestKind  # noqa: E402
from haltgate.governance.request import AgentIdentity, CallView  # noqa: E402
from haltgate.sidecar.call import Call  # noqa: E402
from haltgate.sidecar.drift_watch import DriftWatch  # noqa: E402
from tests.drift.workload import Behaviour, calls  # noqa: E402


def _per_call(behaviour: Behaviour, n: int) -> tuple[float, int]:
    observations = list(calls(behaviour, n, random.Random(1)))
    tracker = DriftTracker()
    start = time.thread_time()
    for call in observations:
        tracker.observe("agent", call)
    spent = time.thread_time() - start
    return spent / n * 1e6, len(tracker.to_json())


def _stage_per_call(n: int) -> float:
    rng = random.Random(1)
    agent = AgentIdentity("ns", "w", "pod", "run")
    calls = []
    for i in range(n):
        llm = rng.random() < 0.6
        view = CallView(
            kind=RequestKind.LLM if llm else RequestKind.HTTP,
            method="POST",
            scheme="https",
            host="api.example",
            port=443,
            path="/v1",
            upstream="llm" if llm else "api",
        )
        call = Call(str(i), 0.0, 1_000.0 + i, None, agent)  # type: ignore[arg-type]
        call.classified = SimpleNamespace(view=view)  # type: ignore[assignment]
        call.upstream_ok = rng.random() > 0.02
        call.forward_started, call.upstream_done = 1.0, 1.0 + rng.lognormvariate(0, 0.4)
        if llm:
            call.cost_usd, call.tokens = rng.lognormvariate(-6, 0.6), 1_000
        calls.append(call)
    watch = DriftWatch(parse_drift({}), agent="ns/w", governor=lambda: None)
    start = time.thread_time()
    for call in calls:
        watch.record(call, "allow")
    return (time.thread_time() - start) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    n = max(1_000, min(args.calls, 2_000_000))
    us, size = _per_call(Behaviour(), n)
    print(f"3 tools:  {us:.2f} us CPU per call, state {size} bytes")
    many = {f"mcp:server/tool-{i}": 1.0 for i in range(32)}
    us, size = _per_call(Behaviour(tools=many), n)
    print(f"32 tools: {us:.2f} us CPU per call, state {size} bytes")
    print(f"sidecar stage (DriftWatch.record): {_stage_per_call(n):.2f} us CPU per call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
