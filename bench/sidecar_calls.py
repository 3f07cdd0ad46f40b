"""Python function calls per request of a sidecar, guardrails off and on: what work the
guardrails add, call by call (not what it costs: see ``guardrails_small_chat.py``).

Run: ``.venv/bin/python bench/sidecar_calls.py [--seconds 2] [--rate 100] [--top 40]``

Two sidecars run in this process one after the other (the policy of
``sidecar_overhead.py``, guardrails off then on, no audit or state I/O), each serving
paced sequential chat completions from a load-generator process (``sidecar_profile.py``'s)
to the stand-in LLM; ``cProfile`` counts the calls of the event loop's thread for
``--seconds`` once the load is under way. Counts are per request (per call of
``classify``, which runs once a request). Printed: the totals, the calls into the
guardrails package, and the functions whose count per request differs most between the
two sidecars. docs/sidecar.md, "Guardrails on a small chat: where the +0.75 CPU-ms goes",
reads it: every extra call of the guardrails-on sidecar is made by the guardrail stages.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import subprocess
import sys
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import sidecar_overhead as overhead  # noqa: E402
import sidecar_profile  # noqa: E402

GUARDRAILS_PACKAGE = "guardrails/"


async def count_calls(
    args: argparse.Namespace,
    tmp: Path,
    up_port: int,
    guardrails: bool,
    into: dict[bool, dict[str, float]],
) -> None:
    """Calls per request of each function (``file:name``) of one sidecar under load, into
    ``into[guardrails]``."""
    from haltgate.sidecar.server import Sidecar
    from haltgate.sidecar.startup import Listen, SidecarSettings

    policy = tmp / f"policy-{guardrails}.yaml"
    upstream = f"http://127.0.0.1:{up_port}"
    policy.write_text(yaml.safe_dump(overhead.policy(upstream, guardrails=guardrails)))
    port = overhead.free_port()
    sidecar = Sidecar(
        SidecarSettings(
            policy_path=policy,
            state_dir=None,
            audit_dir=None,
            explicit=Listen("127.0.0.1", port),
            admin=Listen("127.0.0.1", 0),
            metrics=Listen("127.0.0.1", 0),
        )
    )
    await sidecar.start()
    profiler = cProfile.Profile()
    try:
        load = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            sidecar_profile.LOAD.format(bench=str(BENCH)),
            f"http://127.0.0.1:{port}/llm/v1/chat/completions",
            str(args.seconds + 2.0),
            "1",
            str(args.rate),
            "0",  # not streamed
            stdout=subprocess.PIPE,
        )
        await asyncio.sleep(1.0)  # past the load generator's warm-up
        profiler.enable()
        await asyncio.sleep(args.seconds)
        profiler.disable()
        await load.communicate()
    finally:
        await sidecar.stop()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    calls = {
        f"{path.replace(str(BENCH.parent) + '/', '')}:{name}": float(n)
        for (path, _, name), (_, n, _, _, _) in stats.items()
    }
    requests = next((n for k, n in calls.items() if k.endswith("classify.py:classify")), 0.0)
    if not requests:
        raise SystemExit("no request was classified while profiling (is the load running?)")
    into[guardrails] = {k: n / requests for k, n in calls.items()}


def report(off: dict[str, float], on: dict[str, float], top: int) -> None:
    print(f"calls per request: guardrails off {sum(off.values()):.0f}, on {sum(on.values()):.0f}")
    ours = sum(n for k, n in on.items() if GUARDRAILS_PACKAGE in k)
    print(f"  of which into the guardrails package (guardrails on): {ours:.0f}")
    names = sorted(set(off) | set(on), key=lambda k: -abs(on.get(k, 0.0) - off.get(k, 0.0)))
    print("largest differences outside the guardrails package (off, on, on - off):")
    shown = 0
    for k in names:
        if GUARDRAILS_PACKAGE in k:
            continue
        diff = on.get(k, 0.0) - off.get(k, 0.0)
        if abs(diff) < 0.05 or shown == top:
            break
        print(f"  {off.get(k, 0.0):7.2f} {on.get(k, 0.0):7.2f} {diff:+7.2f}  {k}")
        shown += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="profiled seconds per sidecar")
    ap.add_argument("--rate", type=float, default=100.0, help="calls per second, one at a time")
    ap.add_argument("--top", type=int, default=40, help="differences shown")
    args = ap.parse_args()
    counts: dict[bool, dict[str, float]] = {}
    for guardrails in (False, True):
        overhead.run_with_standin_llm(
            lambda tmp, port, g=guardrails: count_calls(args, tmp, port, g, counts),
            prefix="hg-calls-",
            tmp_dir="/dev/shm",
        )
    report(counts[False], counts[True], args.top)


if __name__ == "__main__":
    main()
