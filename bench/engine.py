"""Budget engine throughput: steps per second for a realistic policy, vs a baseline.

Run: ``.venv/bin/python bench/engine.py [--events N] [--quick]``

The workload is an agent loop replayed from a pre-built event list (so event creation is
not measured): LLM calls (gpt-4o-mini, reserve + settle with usage) and MCP tool calls
(with risk weights), up to 4 calls in flight, 5 % upstream failures, timestamps 50 ms
apart, against the policy of ``docs/examples/policy-basic.yaml`` (every budget dimension
configured; limits raised so the run never halts). Printed:

- engine steps/s (one core), and as a ratio to a baseline measured in the same run: a
  loop doing one small ``dict`` copy-and-update per event (the cheapest "immutable state
  update" Python can do); target >= 200,000 steps/s;
- the same with every decision's budget report read (what an audit record costs);
- the emocore engine option (when the extra is installed), until EmoCore's step fuse;
- the Governor with its state file written on every change, without and with fsync.

Engine runs are timed in CPU time of the thread (robust on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "sidecar")]

from haltgate.governance.engine import (  # noqa: E402
    Engine,
    PriceTable,
    Reserve,
    Settle,
    Usage,
)
from haltgate.governance.governor import Governor, make_engine  # noqa: E402
from haltgate.governance.validation import load_policy_file  # noqa: E402

TARGET_STEPS_PER_S = 200_000
CLOCK = time.thread_time
"""CPU time of this thread: the machine is shared, and time spent descheduled is not the
engine's cost. The Governor runs are timed with the wall clock (their cost is I/O)."""


def realistic_spec() -> Any:
    """The example policy, limits raised so the benchmark never halts."""
    spec = load_policy_file(REPO / "docs/examples/policy-basic.yaml").spec
    budgets = spec.budgets.model_copy(
        update={
            "calls": spec.budgets.calls.model_copy(update={"limit": 10**9}),
            "tokens": spec.budgets.tokens.model_copy(update={"limit": 10**12, "output": 10**12}),
            "cost_usd": spec.budgets.cost_usd.model_copy(update={"limit": 10**6}),
            "wall_time": spec.budgets.wall_time.model_copy(update={"limit_seconds": 10**9}),
            "risk_score": spec.budgets.risk_score.model_copy(update={"limit": 10**9}),
            "consecutive_failures": spec.budgets.consecutive_failures.model_copy(
                update={"limit": 1000}
            ),
        }
    )
    return spec.model_copy(update={"budgets": budgets})


def workload(n_events: int) -> list[Any]:
    """An agent loop as an event list: deterministic (no randomness, a fixed pattern)."""
    events: list[Any] = []
    ts = 1_800_000_000.0
    in_flight: list[tuple[str, int]] = []
    i = 0
    tools = [f"tool_{k}" for k in range(8)]
    while len(events) < n_events:
        i += 1
        ts += 0.05
        kind = i % 3  # two LLM calls per tool call
        call_id = f"call-{i}"
        if kind:
            events.append(
                Reserve(
                    call_id,
                    ts,
                    "llm",
                    "api.openai.com",
                    None,
                    "gpt-4o-mini",
                    4000,
                    1024,
                    f"llm-{i}",
                )
            )
        else:
            events.append(
                Reserve(
                    call_id,
                    ts,
                    "mcp",
                    "mcp-search.tools.svc",
                    tools[i % 8],
                    None,
                    0,
                    0,
                    f"tool-{i % 50}",
                    0.2,
                )
            )
        in_flight.append((call_id, kind))
        if len(in_flight) >= 4 or i % 2:
            done, done_kind = in_flight.pop(0)
            ok = i % 20 != 0
            usage = (
                Usage(1200 + i % 700, 150 + i % 300, cached_input_tokens=512) if done_kind else None
            )
            events.append(
                Settle(
                    done,
                    ts + 0.01,
                    usage if ok else Usage(),
                    ok,
                    None if ok else "err-503",
                    f"res-{i}" if ok else None,
                )
            )
    return events[:n_events]


def run_engine(engine: Engine, events: Sequence[Any], read_budget: bool = False) -> float:
    state = engine.initial_state()
    step = engine.step
    t0 = CLOCK()
    if read_budget:
        for ev in events:
            state, d = step(state, ev)
            len(d.budget)
    else:
        for ev in events:
            state, _ = step(state, ev)
    elapsed = CLOCK() - t0
    if state.halt is not None:
        raise SystemExit(f"benchmark policy halted: {state.halt}")
    return elapsed


def run_baseline(events: Sequence[Any]) -> float:
    state: dict[str, Any] = {"calls": 0, "tokens": 0}
    t0 = CLOCK()
    for ev in events:
        new = dict(state)
        new["last"] = ev
        state = new
    return CLOCK() - t0


def run_governor(spec: Any, events: Sequence[Any], fsync: bool, folder: str) -> float:
    gov = Governor(make_engine(spec), os.path.join(folder, f"state-{fsync}"), fsync=fsync)
    apply = gov.apply
    t0 = time.perf_counter()
    for ev in events:
        apply(ev)
    elapsed = time.perf_counter() - t0
    gov.close()
    return elapsed


def run_rename(payload: bytes, n: int, folder: str) -> float:
    """The rejected alternative: temp file + rename over the state file, per change."""
    path = os.path.join(folder, "rename-state.json")
    tmp = path + ".tmp"
    t0 = time.perf_counter()
    for _ in range(n):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, payload)
        os.close(fd)
        os.replace(tmp, path)
    return time.perf_counter() - t0


def run_emocore(spec: Any, events: Sequence[Any], repeat: int) -> float | None:
    """Steps/s of the emocore adapter, or None without the emocore extra."""
    try:
        import emocore  # noqa: F401
    except ImportError:
        return None
    emo_spec = spec.model_copy(
        update={
            "engine": spec.engine.model_copy(update={"type": "emocore", "profile": "aggressive"})
        }
    )
    engine = make_engine(emo_spec)
    rates = []
    for _ in range(repeat):
        state = engine.initial_state()
        n = 0
        t0 = CLOCK()
        for ev in events:
            state, d = engine.step(state, ev)
            n += 1
            if d.halted:
                break
        rates.append(n / (CLOCK() - t0))
    return max(rates)


def best(fn: Callable[[], float], repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20,000 events, 1 repeat")
    args = parser.parse_args()
    n, repeat = (20_000, 1) if args.quick else (args.events, args.repeat)

    spec = realistic_spec()
    engine = Engine(spec, PriceTable.for_policy(spec.pricing))
    events = workload(n)
    run_engine(engine, events[:2000])  # warm caches (price lookups)

    base = n / best(lambda: run_baseline(events), repeat)
    eng = n / best(lambda: run_engine(engine, events), repeat)
    eng_b = n / best(lambda: run_engine(engine, events, True), repeat)
    print(
        f"events: {n} ({sum(isinstance(e, Reserve) for e in events)} reserves), "
        f"python {sys.version.split()[0]}, best of {repeat}"
    )
    print(f"baseline dict copy+update : {base:12,.0f} ops/s")
    print(
        f"engine.step               : {eng:12,.0f} steps/s  ratio {eng / base:.3f} "
        f"of baseline  target {TARGET_STEPS_PER_S:,} -> "
        f"{'OK' if eng >= TARGET_STEPS_PER_S else 'BELOW TARGET'}"
    )
    print(f"engine.step + budget read : {eng_b:12,.0f} steps/s  ratio {eng_b / base:.3f}")

    emo = run_emocore(spec, events, repeat)
    if emo is not None:
        print(
            f"engine: emocore           : {emo:12,.0f} steps/s  ratio {emo / base:.3f}  "
            "(aggressive profile, until its 200-step fuse)"
        )

    gn = min(n, 20_000)
    fn = min(gn, 1000)
    state = engine.initial_state()
    for ev in events[:200]:
        state, _ = engine.step(state, ev)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMPDIR")) as folder:
        gov = gn / run_governor(spec, events[:gn], False, folder)
        gov_fs = fn / run_governor(spec, events[:fn], True, folder)
        ren = fn / run_rename(state.to_json_bytes(), fn, folder)
    for label, rate in (("governor, state slots", gov), ("governor, slots+fdatasync", gov_fs)):
        print(
            f"{label:26}: {rate:12,.0f} steps/s  ratio {rate / base:.3f}  "
            f"({1e6 / rate:.1f} us/step, wall clock)"
        )
    print(
        f"{'(rejected) tmp + rename':26}: {ren:12,.0f} writes/s ({1e6 / ren:.1f} us/write, "
        "write only, wall clock)"
    )


if __name__ == "__main__":
    main()
