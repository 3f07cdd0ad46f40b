"""Guardrail CPU of one small chat call, in process: what the sidecar's guardrails cost on
the call of ``bench/sidecar_overhead.py`` (two short messages in, a short answer out).

Run: ``.venv/bin/python bench/guardrails_small_chat.py [--rounds 25] [--calls 300]
[--cold] [--parts] [--gate] [--sidecar [--seconds 6] [--rate 200] [--again]]``

The policy's guardrails are those of ``sidecar_overhead.py`` (prompt injection on
requests, PII redaction and secrets on both directions), compiled as the sidecar compiles
them. Timed per call, as the sidecar runs them: the request's URL and headers
(``request_meta``), the request body (``Guardrails.scan_json``), the answer body as the
stand-in LLM sends it (``response_body.scan_decoded_body``, model answer channel) and the
answer's header values (``answer_headers``). CPU time of this process
(``time.process_time``), best of ``--rounds`` rounds of ``--calls`` calls: warm caches,
the code's own cost; under load and between other work a call costs more. ``--cold``:
each stage timed alone after 32 MiB of memory were written over (the caches emptied, as
for a call that follows other processes' work), median of ``--calls`` calls (CPU time of
the thread).

Besides the warm figure, the last line is one call cold: the stages in order after the
caches were emptied and the interpreter re-warmed by unrelated work, median of ``--calls``
calls. That is what a sidecar serving calls one at a time pays: it runs exactly the same
function calls per request as this bench (a whole-process count, guardrails on minus off,
docs/sidecar.md), but each of them after other processes' work. ``--parts``: that cold
call's time by detector and walk.

``--gate``: the request and answer bodies with the policy's clean gate and without it
(``Guardrails.from_spec(..., clean_gate=False)``), interleaved, cold and warm.

``--sidecar``: the same stages inside a real sidecar (in this process, the policy of
``sidecar_overhead.py`` with guardrails, no audit or state I/O, start-up objects frozen
as ``haltgate sidecar`` does) serving the stand-in LLM's
answers to paced sequential calls from a load-generator process (``sidecar_profile.py``'s):
the CPU time of this thread spent in the sidecar's guardrail stages per call, next to the
whole process's CPU per call. Calls come one at a time, each after other processes ran, so
caches are cold as in ``sidecar_overhead.py``'s latency run. To compare trees, run the same
file with ``PYTHONPATH`` pointing at the other tree's packages (docs/sidecar.md, "Guardrails
on a small chat").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import sidecar_overhead as overhead  # noqa: E402

ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-2ba16dbe49770eb93db7e91a",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": " ".join(f"tok{i}" for i in range(16)),
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 21,
            "completion_tokens": 16,
            "total_tokens": 37,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
)
"""The stand-in LLM's answer to ``sidecar_overhead.CHAT`` (its shape and sizes)."""
REQUEST_HEADERS = (
    ("Host", "127.0.0.1:8080"),
    ("Content-Type", "application/json"),
    ("Content-Length", str(len(overhead.CHAT))),
    ("User-Agent", "Python/3.11 aiohttp/3.9"),
    ("Accept", "*/*"),
    ("Accept-Encoding", "gzip, deflate"),
)
ANSWER_HEADERS = (
    ("Content-Type", "application/json; charset=utf-8"),
    ("Content-Length", str(len(ANSWER))),
    ("Date", "Mon, 07 Dec 2026 21:00:00 GMT"),
    ("Server", "Python/3.11 aiohttp/3.9"),
)


def stages() -> dict[str, Callable[[], object]]:
    from haltgate.governance.guardrails import Guardrails
    from haltgate.governance.guardrails.answer_headers import scan_headers
    from haltgate.governance.guardrails.request_meta import scan_request_meta
    from haltgate.governance.guardrails.response_body import scan_decoded_body
    from haltgate.governance.policy_checks import Guardrails as Spec

    g = Guardrails.from_spec(Spec.model_validate(overhead.GUARDRAILS))
    content_type = dict(ANSWER_HEADERS)["Content-Type"]
    return {
        "request URL and headers": lambda: scan_request_meta(
            g, "/llm/v1/chat/completions", "", REQUEST_HEADERS
        ),
        # parsed per call, as the sidecar's classification does
        "request body": lambda: g.scan_json(orjson.loads(overhead.CHAT), "request"),
        "answer body": lambda: scan_decoded_body(g, ANSWER, content_type, channel="request"),
        "answer headers": lambda: scan_headers(g, ANSWER_HEADERS),
    }


def best_us(fn: Callable[[], object], rounds: int, calls: int) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, time.process_time() - t0)
    return best / calls * 1e6


def _timed(cls: type, name: str, spent: dict[str, float], again: bool = False) -> None:
    """Wrap the method `name` of `cls` to add its thread CPU time to `spent`; `again`: run
    it a second time at once on the same arguments (the bench's calls are clean, so
    nothing changes) and add that time under ``"<name>, again"`` (warm, same input)."""
    method = getattr(cls, name)

    def timed(*args: object, **kwargs: object) -> object:
        t0 = time.thread_time()
        try:
            return method(*args, **kwargs)
        finally:
            t1 = time.thread_time()
            spent[name] = spent.get(name, 0.0) + t1 - t0
            spent[f"{name} calls"] = spent.get(f"{name} calls", 0) + 1
            if again:
                method(*args, **kwargs)
                key = f"{name}, again"
                spent[key] = spent.get(key, 0.0) + time.thread_time() - t1

    setattr(cls, name, timed)


async def in_sidecar(args: argparse.Namespace, tmp: Path, up_port: int) -> None:
    import asyncio
    import subprocess

    import sidecar_profile
    import yaml

    from haltgate.cli import sidecar as cli_sidecar
    from haltgate.sidecar.request_stages import RequestStages
    from haltgate.sidecar.response_guard import ResponseGuard
    from haltgate.sidecar.server import Sidecar
    from haltgate.sidecar.startup import Listen, SidecarSettings

    spent: dict[str, float] = {}
    _timed(RequestStages, "scan_request", spent, args.again)
    for name in ("decode_response", "scan_response", "scan_answer_headers"):
        _timed(ResponseGuard, name, spent, args.again)
    policy = tmp / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(overhead.policy(f"http://127.0.0.1:{up_port}", guardrails=True))
    )
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
    freeze = getattr(cli_sidecar, "freeze_startup_objects", None)
    if freeze is not None:  # as `haltgate sidecar` does (absent from older trees)
        freeze()
    try:
        load = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            sidecar_profile.LOAD.format(bench=str(BENCH)),
            f"http://127.0.0.1:{port}/llm/v1/chat/completions",
            str(args.seconds),
            "1",
            str(args.rate),
            "0",  # not streamed
            stdout=subprocess.PIPE,
        )
        await asyncio.sleep(0.8)  # past the load generator's warm-up
        spent.clear()
        cpu0 = time.process_time()
        out, _ = await load.communicate()
        cpu = time.process_time() - cpu0
    finally:
        await sidecar.stop()
    # calls counted by the sidecar since the counters were cleared (warm-up calls of a
    # slow machine included: the load generator counts only its timed ones)
    n = int(spent.get("scan_request calls", 0)) or int(out.split()[0])
    times = {k: v for k, v in spent.items() if not k.endswith((" calls", ", again"))}
    stage = sum(times.values())
    print(f"{n} calls at ~{args.rate:g}/s, one at a time")
    for name, s in times.items():
        repeat = spent.get(f"{name}, again")
        then = "" if repeat is None else f"  (run again at once: {repeat / n * 1e6:.1f} us)"
        print(f"{s / n * 1e6:9.1f} us  {name}{then}")
    print(f"{stage / n * 1e6:9.1f} us  guardrail stages per call (CPU time of the loop thread)")
    repeats = " and the repeats" if args.again else ""
    print(f"{cpu / n * 1e6:9.1f} us  whole sidecar process per call (warm-up{repeats} included)")


def cold_us(fn: Callable[[], object], calls: int) -> float:
    """Median thread CPU time of `fn` right after the caches were filled with other data."""
    import numpy as np

    other = np.zeros(32 * 1024 * 1024 // 8)
    fn()
    times = []
    for _ in range(calls):
        other[::8] += 1.0  # one write per 64-byte cache line
        t0 = time.thread_time_ns()
        fn()
        times.append(time.thread_time_ns() - t0)
    times.sort()
    return times[len(times) // 2] / 1000


@dataclasses.dataclass
class _Other:
    a: int
    b: str


def _rewarm_interpreter() -> None:
    """Unrelated Python work (JSON, a dataclass, strings, a sort): what the pipeline's other
    stages run between two guardrail stages, so the interpreter's own code and objects are
    warm again while the guardrails' code and tables stay cold."""
    for i in range(20):
        json.dumps({"a": [1, 2, 3], "b": "x" * i})
        _ = _Other(i, str(i)).a
        "a,b".split(",")
        sorted([3, 1, i])


def cold_call_us(fns: list[Callable[[], object]], calls: int) -> float:
    """Median thread CPU time of one call (every stage in order), each after 32 MiB were
    written over and the interpreter re-warmed: a call as a sidecar serving calls one at a
    time between other processes' work runs it (docs/sidecar.md, "Guardrails on a small
    chat": the sidecar runs the same ~600 function calls per request, and each costs what
    it costs here, not its warm figure)."""
    import numpy as np

    other = np.zeros(32 * 1024 * 1024 // 8)
    for fn in fns:
        fn()
    times = []
    for _ in range(calls):
        other[::8] += 1.0
        _rewarm_interpreter()
        t0 = time.thread_time_ns()
        for fn in fns:
            fn()
        times.append(time.thread_time_ns() - t0)
    times.sort()
    return times[len(times) // 2] / 1000


def gate_ab(calls: int) -> None:
    """The small chat's request and answer bodies scanned by the policy with its clean gate
    (`guardrails/clean_gate.py`) and without it (``clean_gate=False``), interleaved in a
    random order, each cold call after the caches were emptied and the interpreter
    re-warmed (median of `calls`), then warm (best of 10 x 200)."""
    import random

    import numpy as np

    from haltgate.governance.guardrails import Guardrails
    from haltgate.governance.guardrails.response_body import scan_decoded_body
    from haltgate.governance.policy_checks import Guardrails as Spec

    spec = Spec.model_validate(overhead.GUARDRAILS)
    content_type = dict(ANSWER_HEADERS)["Content-Type"]

    def bodies(g: Guardrails) -> list[Callable[[], object]]:
        return [
            lambda: g.scan_json(orjson.loads(overhead.CHAT), "request"),
            lambda: scan_decoded_body(g, ANSWER, content_type, channel="request"),
        ]

    arms = {
        "without the gate": bodies(Guardrails.from_spec(spec, clean_gate=False)),
        "with the gate": bodies(Guardrails.from_spec(spec)),
    }
    other = np.zeros(32 * 1024 * 1024 // 8)
    for fns in arms.values():
        for fn in fns:
            fn()
    times: dict[str, list[int]] = {name: [] for name in arms}
    rng = random.Random(7)
    for _ in range(calls):
        for name in rng.sample(list(arms), len(arms)):
            other[::8] += 1.0
            _rewarm_interpreter()
            t0 = time.thread_time_ns()
            for fn in arms[name]:
                fn()
            times[name].append(time.thread_time_ns() - t0)
    for name, fns in arms.items():
        cold = sorted(times[name])[len(times[name]) // 2] / 1000
        warm = best_us(lambda fns=fns: [fn() for fn in fns], 10, 200)
        print(f"{cold:9.1f} us cold, {warm:7.1f} us warm  request and answer body, {name}")


PARTS = (
    ("injection: n-gram fast stage", "ngram", "NgramModel", "score"),
    ("injection: the rest (patterns, views, decoding)", "injection", "InjectionDetector", "detect"),
    ("secrets detector", "secrets", "SecretsDetector", "detect"),
    ("PII detector", "pii", "PIIDetector", "detect"),
    ("JSON string walk (collect_strings)", "engine", None, "collect_strings"),
    ("answer: parse (every reading)", "response_body", None, "parse_answer_json"),
)
"""Parts timed by ``--parts`` (inclusive thread CPU; the n-gram stage runs inside the
injection detector and is taken out of its line)."""


def timed_parts() -> dict[str, list[int]]:
    """Wrap the `PARTS` to add their thread CPU time (ns) and calls to the returned dict."""
    import importlib

    spent: dict[str, list[int]] = {}
    for label, module_name, cls_name, attr in PARTS:
        module = importlib.import_module(f"haltgate.governance.guardrails.{module_name}")
        owner = module if cls_name is None else getattr(module, cls_name)
        fn = getattr(owner, attr)

        def timed(*a: object, _fn: Any = fn, _label: str = label, **k: object) -> object:
            t0 = time.thread_time_ns()
            try:
                return _fn(*a, **k)
            finally:
                entry = spent.setdefault(_label, [0, 0])
                entry[0] += time.thread_time_ns() - t0
                entry[1] += 1

        setattr(owner, attr, timed)
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--cold", action="store_true", help="each call after the caches were emptied")
    ap.add_argument("--sidecar", action="store_true", help="measure inside a real sidecar")
    ap.add_argument(
        "--parts", action="store_true", help="the cold call's time by detector and walk"
    )
    ap.add_argument("--seconds", type=float, default=6.0, help="with --sidecar")
    ap.add_argument("--rate", type=float, default=200.0, help="with --sidecar: calls per second")
    ap.add_argument(
        "--again",
        action="store_true",
        help="with --sidecar: each stage run a second time at once on the same input, timed "
        "apart (the same code warm: what the cold first run costs more)",
    )
    ap.add_argument(
        "--gate",
        action="store_true",
        help="the request and answer bodies with the policy's clean gate and without it, "
        "interleaved (cold and warm)",
    )
    args = ap.parse_args()
    import os

    from haltgate.governance.guardrails import engine

    print(f"guardrails of {engine.__file__}, load average {os.getloadavg()[0]:.1f}")
    if args.gate:
        gate_ab(args.calls)
        return
    if args.sidecar:
        overhead.run_with_standin_llm(
            lambda tmp, port: in_sidecar(args, tmp, port), prefix="hg-guard-", tmp_dir="/dev/shm"
        )
        return
    total = 0.0
    for name, fn in stages().items():
        us = cold_us(fn, args.calls) if args.cold else best_us(fn, args.rounds, args.calls)
        total += us
        print(f"{us:9.1f} us  {name}")
    how = (
        f"median of {args.calls}, caches emptied before each"
        if args.cold
        else f"best of {args.rounds} x {args.calls}"
    )
    print(f"{total:9.1f} us  per call ({how}, CPU time)")
    if not args.cold:
        spent = timed_parts() if args.parts else {}
        fns = list(stages().values())
        for fn in fns:
            fn()
        spent.clear()
        cold = cold_call_us(fns, args.calls)
        print(
            f"{cold:9.1f} us  per call, cold (the stages in order after the caches were "
            f"emptied, median of {args.calls}): what a sidecar pays"
        )
        if spent:
            calls = args.calls + 1  # cold_call_us runs every stage once before timing
            fast = spent.get(PARTS[0][0], [0, 0])[0]
            print("  of which (mean per call, thread CPU; timing adds ~1 us per part):")
            for label, (ns, n) in spent.items():
                own = ns - fast if label.startswith("injection: the rest") else ns
                print(f"  {own / calls / 1000:9.1f} us  {label} ({n / calls:g} per call)")


if __name__ == "__main__":
    main()
