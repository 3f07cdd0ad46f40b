"""CPU of each per-call stage of the sidecar's pipeline, on a real call, best of N.

Run: ``.venv/bin/python bench/sidecar_stages.py [--guardrails] [--repeat 15] [--cold]``

A sidecar runs in this process (the policy of ``bench/sidecar_overhead.py``, audit spool
and state in /dev/shm) and serves a few chat completions from the stand-in LLM; the last
call (its ``Call``, request, upstream answer) is kept and each stage the pipeline runs for
a call is then timed on it alone, in a loop, best of ``--repeat`` rounds (a shared machine
slows some rounds; the best is the code's own cost, warm caches). The network, aiohttp and
the disk's fdatasync are not in these figures: ``sidecar_overhead.py`` and
``sidecar_profile.py`` measure the whole. Stages that need a fresh call each time (budget
reserve + settle, both audit records of a call) get one per round trip.

``--cold``: each stage run once right after 32 MiB were written over (the caches emptied,
as for a call every 5-20 ms between other processes' work, which is what
``sidecar_overhead.py``'s sequential latency run sees), median thread CPU time of
``--calls`` runs: the figure that tracks the governance tax, where the warm one tracks
the closed loop.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import sidecar_overhead as overhead  # noqa: E402


async def capture(tmp: Path, up_port: int, guardrails: bool) -> tuple[Any, Any, Any, Any]:
    """A started sidecar, its last call, that call's request and the upstream's answer."""
    from haltgate.sidecar.server import Sidecar
    from haltgate.sidecar.startup import Listen, SidecarSettings

    policy = tmp / "policy.yaml"
    upstream = f"http://127.0.0.1:{up_port}"
    policy.write_text(yaml.safe_dump(overhead.policy(upstream, guardrails=guardrails)))
    port = overhead.free_port()
    sidecar = Sidecar(
        SidecarSettings(
            policy_path=policy,
            state_dir=tmp / "state",
            audit_dir=tmp / "audit",
            explicit=Listen("127.0.0.1", port),
            admin=Listen("127.0.0.1", 0),
            metrics=Listen("127.0.0.1", 0),
        )
    )
    await sidecar.start()
    pipeline = sidecar.pipeline
    assert pipeline is not None
    kept: dict[str, Any] = {}
    cls: Any = type(pipeline)
    handle, finish = cls.handle, cls._finish

    async def keep_request(self: Any, request: Any, target: Any) -> Any:
        kept["request"] = request
        return await handle(self, request, target)

    def keep_call(self: Any, call: Any, decision: str, code: str | None) -> None:
        kept["call"] = call
        finish(self, call, decision, code)

    cls.handle, cls._finish = keep_request, keep_call
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(20):
                async with s.post(
                    f"http://127.0.0.1:{port}/llm/v1/chat/completions",
                    data=overhead.CHAT,
                    headers={"Content-Type": "application/json"},
                ) as r:
                    await r.read()
                    if r.status != 200:
                        raise SystemExit(f"sidecar answered {r.status}: {await r.text()}")
            async with s.post(
                f"{upstream}/v1/chat/completions",
                data=overhead.CHAT,
                headers={"Content-Type": "application/json"},
            ) as r:
                answer = (await r.read(), r.headers.copy())
    finally:
        cls.handle, cls._finish = handle, finish
    return sidecar, kept["call"], kept["request"], answer


Chain = tuple[Callable[[], Any], Callable[[], Any], Callable[[], Any]]
"""(prepare, timed, clean up) of a sequence of stages on a fresh call."""


def stages(
    sidecar: Any, call: Any, request: Any, answer: Any, chains: dict[str, Chain]
) -> dict[str, Callable[[], Any]]:
    """One callable per stage, each doing what the pipeline does for one call; the stages
    in sequence as they run before forwarding and after the answer go into ``chains``."""
    from haltgate.governance.audit import fit
    from haltgate.governance.canonical import check_meaning_overrides
    from haltgate.sidecar.call import fingerprint_of, overhead_ms
    from haltgate.sidecar.classify import classify
    from haltgate.sidecar.relay_headers import forward_headers, response_headers
    from haltgate.sidecar.target_resolution import resolve_explicit

    p = sidecar.pipeline
    body, headers = answer
    writer = sidecar.audit._writer
    ids = itertools.count()
    counts, _ = p.read_usage(call, 200, body=body)

    def budget() -> None:
        call.decision_id = f"bench-{next(ids)}"
        call.reserved = False
        p.reserve_budget(call)
        p.settle_budget(call, counts, True, None, "fp")

    def records() -> None:
        call.scrub = None  # one scrubber per call, shared by its two records
        p._record(call, "intent", decision="allow")
        p._record(call, "outcome", decision="allow", status=200, counts=counts)

    intent = p._record(call, "intent", decision="allow")
    limit = writer.settings.max_payload_bytes
    if hasattr(fit, "fit_payload"):
        refit = writer._fit_payload

        def seal() -> None:
            writer.chainer.seal_line(
                fit.fit_fields(intent), max_bytes=1 << 24, refit=refit, refit_above=limit
            )
    else:  # the code before the sealer measured payloads itself (A/B runs)

        def seal() -> None:
            writer.chainer.seal_line(fit.fit_record(intent, limit), max_bytes=1 << 24)

    def target() -> None:
        resolve_explicit(request, p.controls)
        check_meaning_overrides(request.headers, "", request.content_type, call.body)

    def before_forwarding() -> None:
        # What a call runs between its body read and its forwarding, in order, on a fresh
        # call (the stages that would each warm the interpreter for the next run together).
        t = resolve_explicit(request, p.controls)
        check_meaning_overrides(request.headers, "", request.content_type, call.body)
        fresh = p.identify()
        fresh.target, fresh.method, fresh.body = t, "POST", call.body
        fresh.classified = classify("POST", t, call.body, call.agent)
        p.check_not_halted(fresh)
        p.authorize_tools(fresh)
        p.check_flows(fresh, request.headers)
        p.scan_request(fresh, request.headers)
        p.reserve_budget(fresh)
        record = p._record(fresh, "intent", decision="allow")
        writer.chainer.seal_line(
            fit.fit_fields(record),
            max_bytes=1 << 24,
            refit=writer._fit_payload,
            refit_above=limit,
        )
        kept_calls.append(fresh)

    def after_answer() -> None:
        # From the upstream's whole answer to the agent's answer built; what the pipeline
        # leaves to loop callbacks (the outcome record) runs after, timed apart.
        fresh = kept_calls.pop()
        got, content_fp = p.read_usage(fresh, 200, body=body)
        settle = p.settle_budget(fresh, got, True, None, content_fp)
        response_headers(headers, fresh, settle, None)
        overhead_ms(fresh)
        p._finish(fresh, "allow", None)
        p._audit_outcome(fresh, 200, got, decision="allow")

    def release() -> None:
        fresh = kept_calls.pop()
        p.settle_budget(fresh, counts, True, None, "fp")

    kept_calls: list[Any] = []
    if hasattr(fit, "fit_payload"):
        chains.update(
            {
                "chain: before forwarding": (lambda: None, before_forwarding, release),
                "chain: the answer, until sent": (before_forwarding, after_answer, lambda: None),
            }
        )
    out: dict[str, Callable[[], Any]] = {
        "target, overrides": target,
        "identify": p.identify,
        "classify": lambda: classify("POST", call.target, call.body, call.agent),
        "halt check, tool rules": lambda: (p.check_not_halted(call), p.authorize_tools(call)),
        "budget reserve + settle": budget,
        "audit records (intent + outcome)": records,
        "seal + fit (one record, x2 per call)": seal,
        "usage read": lambda: p.read_usage(call, 200, body=body),
        "headers (forward + answer)": lambda: (
            forward_headers(request.headers, call),
            response_headers(headers, call, None),
        ),
        "fingerprint, overhead": lambda: (fingerprint_of(call), overhead_ms(call)),
        "metrics": lambda: p._finish(call, "allow", None),
    }
    if call.controls.guardrails is not None:
        out["guardrails, request"] = lambda: p.scan_request(call, request.headers)
        out["guardrails, response"] = lambda: p.scan_response(
            call, body, headers.get("Content-Type")
        )
    return out


_NOTHING: Callable[[], Any] = lambda: None  # noqa: E731


def cold_us(
    fn: Callable[[], object],
    calls: int,
    prepare: Callable[[], Any] = _NOTHING,
    cleanup: Callable[[], Any] = _NOTHING,
    cold: bool = True,
) -> float:
    """Median thread CPU time of ``fn`` right after the caches were filled with other data
    (``cold=False``: without that, warm)."""
    other = bytearray(32 * 1024 * 1024)
    fill = [bytes([i]) * len(other) for i in range(2)]
    prepare()
    fn()
    cleanup()
    times = []
    for i in range(calls):
        prepare()
        if cold:
            other[:] = fill[i & 1]  # every cache line written over
        t0 = time.thread_time_ns()
        fn()
        times.append(time.thread_time_ns() - t0)
        cleanup()
    times.sort()
    return times[len(times) // 2] / 1000


async def chain_us(
    fn: Callable[[], object],
    calls: int,
    prepare: Callable[[], Any],
    cleanup: Callable[[], Any],
    cold: bool,
) -> tuple[float, float]:
    """:func:`cold_us` of a chain, and the median thread CPU time of the loop callbacks it
    left (run right after it, as the loop does once a handler returned)."""
    other = bytearray(32 * 1024 * 1024)
    fill = [bytes([i]) * len(other) for i in range(2)]
    now, later = [], []
    for i in range(calls + 1):
        prepare()
        await asyncio.sleep(0)
        if cold:
            other[:] = fill[i & 1]  # every cache line written over
        t0 = time.thread_time_ns()
        fn()
        t1 = time.thread_time_ns()
        await asyncio.sleep(0)
        t2 = time.thread_time_ns()
        cleanup()
        if i:
            now.append(t1 - t0)
            later.append(t2 - t1)
    now.sort()
    later.sort()
    return now[len(now) // 2] / 1000, later[len(later) // 2] / 1000


async def run(args: argparse.Namespace, tmp: Path, up_port: int) -> None:
    sidecar, call, request, answer = await capture(tmp, up_port, args.guardrails)
    try:
        total = 0.0
        how = f"cold, median of {args.calls}" if args.cold else f"best of {args.repeat}"
        print(f"{'us per call':>12}  stage ({how})")
        chains: dict[str, Chain] = {}
        for name, fn in stages(sidecar, call, request, answer, chains).items():
            if args.only not in name:
                continue
            fn()
            if args.cold:
                best = cold_us(fn, args.calls)
            else:
                number = max(1, int(0.02 / max(timeit.timeit(fn, number=5) / 5, 1e-7)))
                best = min(timeit.repeat(fn, number=number, repeat=args.repeat)) / number * 1e6
            weight = 2 if name.startswith("seal") else 1
            total += best * weight
            print(f"{best:12.1f}  {name}")
        print(f"{total:12.1f}  total (seal counted twice)")
        for name, (prepare, fn, cleanup) in chains.items():
            if args.only not in name:
                continue
            now, later = await chain_us(fn, args.calls, prepare, cleanup, cold=args.cold)
            print(f"{now:12.1f}  {name} (median of {args.calls})")
            print(f"{later:12.1f}    and in loop callbacks after it (outcome record, ...)")
    finally:
        await sidecar.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--guardrails", action="store_true", help="the policy with guardrails on")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--cold", action="store_true", help="each run after the caches were emptied")
    ap.add_argument("--only", default="", help="the stages whose name holds this text")
    ap.add_argument("--calls", type=int, default=200, help="with --cold: runs per stage")
    args = ap.parse_args()
    overhead.run_with_standin_llm(
        lambda tmp, port: run(args, tmp, port), prefix="hg-stages-", tmp_dir="/dev/shm"
    )


if __name__ == "__main__":
    main()
