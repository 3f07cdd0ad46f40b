"""Drift tracker cost per call, and the size of its state.

Run: ``.venv/bin/python bench/drift.py [--calls N]``

A steady synthetic workload (``tests/drift/workload.py``, 3 tools, 2% errors) is built
first, then fed to :class:`DriftTracker` with the default settings (windows of 100 calls,
six dimensions); printed: CPU microseconds per ``observe`` (window scoring included,
amortised), the same for a tool mix of 32 tools (the cap), and the JSON state size.
Timed in the thread's CPU time (robust on a shared machine).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from haltgate.governance.drift import DriftTracker  # noqa: E402
from tests.drift.workload import Behaviour, calls  # noqa: E402


def _per_call(behaviour: Behaviour, n: int) -> tuple[float, int]:
    observations = list(calls(behaviour, n, random.Random(1)))
    tracker = DriftTracker()
    start = time.thread_time()
    for call in observations:
        tracker.observe("agent", call)
    spent = time.thread_time() - start
    return spent / n * 1e6, len(tracker.to_json())


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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
