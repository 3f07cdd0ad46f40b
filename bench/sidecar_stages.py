"""CPU of each per-call stage of the sidecar's pipeline, on a real call, best of N.

Run: ``.venv/bin/python bench/sidecar_stages.py [--guardrails] [--repeat 15]``

A sidecar runs in this process (the policy of ``bench/sidecar_overhead.py``, audit spool
and state in /dev/shm) and serves a few chat completions from the stand-in LLM; the last
call (its ``Call``, request, upstream answer) is kept and each stage the pipeline runs for
a call is then timed on it alone, in a loop, best of ``--repeat`` rounds (a shared machine
slows some rounds; the best is the code's own cost, warm caches). The network, aiohttp and
the disk's fdatasync are not in these figures: ``sidecar_overhead.py`` and
``sidecar_profile.py`` measure the whole. Stages that need a fresh call each time (budget
reserve + settle, both audit records of a call) get one per round trip.
"""

from __future__ import annotations

import argparse
import itertools
import sys
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


def stages(sidecar: Any, call: Any, request: Any, answer: Any) -> dict[str, Callable[[], Any]]:
    """One callable per stage, each doing what the pipeline does for one call."""
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


async def run(args: argparse.Namespace, tmp: Path, up_port: int) -> None:
    sidecar, call, request, answer = await capture(tmp, up_port, args.guardrails)
    try:
        total = 0.0
        print(f"{'us per call':>12}  stage (best of {args.repeat})")
        for name, fn in stages(sidecar, call, request, answer).items():
            fn()
            number = max(1, int(0.02 / max(timeit.timeit(fn, number=5) / 5, 1e-7)))
            best = min(timeit.repeat(fn, number=number, repeat=args.repeat)) / number * 1e6
            weight = 2 if name.startswith("seal") else 1
            total += best * weight
            print(f"{best:12.1f}  {name}")
        print(f"{total:12.1f}  total (seal counted twice)")
    finally:
        await sidecar.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--guardrails", action="store_true", help="the policy with guardrails on")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    overhead.run_with_standin_llm(
        lambda tmp, port: run(args, tmp, port), prefix="hg-stages-", tmp_dir="/dev/shm"
    )


if __name__ == "__main__":
    main()
