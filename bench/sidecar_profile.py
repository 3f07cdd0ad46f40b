"""Where a sidecar spends its CPU: one in-process sidecar under a closed-loop load.

Run: ``.venv/bin/python bench/sidecar_profile.py [--seconds 5] [--concurrency 16]
[--rate N] [--audit spool|memory] [--state tmpfs|none] [--disk] [--guardrails]
[--stream] [--http-server llhttp|aiohttp] [--py-spy [--gil] [--native] [--keep FILE]]``

The stand-in LLM and the load generator are subprocesses; the sidecar (the same
``Sidecar`` as ``haltgate sidecar``, uvloop, the policy of ``bench/sidecar_overhead.py``)
runs in this process, so its CPU time (``time.process_time``: every thread, user + system)
per request is measured without the other processes. Spool and state live in /dev/shm by
default (``--disk``: in a temporary directory on disk, as in production): disk latency is
``sidecar_overhead.py``'s subject, CPU per call is this one's. ``--concurrency 1`` is the
sequential case, where every call pays its own commit.

``--py-spy`` records a sampling profile of this process during the load (py-spy, in the
dev extra) and prints the functions with the most samples, self and inclusive. py-spy
samples threads that are not idle, so time a thread waits for the GIL or is preempted
right after waking another process also shows, next to CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import sidecar_overhead as overhead  # noqa: E402

LOAD = """
import sys, uvloop
sys.path.insert(0, {bench!r})
import sidecar_overhead as o
url, seconds, concurrency, rate = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(
    sys.argv[4]
)
stream = sys.argv[5] == "1"
run = o.paced(url, seconds, rate, stream) if rate else o.closed_loop(url, seconds, concurrency)
n, wall = uvloop.run(run)
print(n, wall)
"""


def summarise(raw: Path, top: int = 30) -> None:
    """Print a flat profile from py-spy's raw (collapsed stacks) output."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)", ")", f) for f in stack.split(";")]
        if frames[-1].startswith(("Condition.wait", "wait (threading")):
            continue  # the spool writer waiting for work
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    print(f"\n{total} samples (idle waits left out)\nself:")
    for frame, n in own.most_common(top):
        print(f"  {100 * n / total:5.1f}% {frame}")
    print("inclusive, haltgate code:")
    shown = 0
    for frame, n in incl.most_common():
        if "haltgate" in frame or re.search(
            r"\((pipeline|governor|spool|record|usage|"
            r"classify|budget|core)\.py\)",
            frame,
        ):
            print(f"  {100 * n / total:5.1f}% {frame}")
            shown += 1
            if shown == top:
                break


# Stages of a call, by the function whose frame is closest to the sampled leaf (a stage
# nested in another counts for the inner one): regular expressions over "Class.method (file)".
STAGES: tuple[tuple[str, str], ...] = (
    ("guardrails, request", r"^RequestStages\.(scan_request|_scan_request_meta) "),
    ("guardrails, response", r"^ResponseGuard\.(scan_response|decode_response) "),
    ("stream events (meter, scan)", r"^(StreamScan\.|meter_events |scan_events |StreamGuard\.)"),
    ("audit outcome record", r"^DecisionAudit\._queue_outcome "),
    ("audit intent (record, seal, commit)", r"^DecisionAudit\.audit_intent "),
    ("budget reserve", r"^BudgetStages\.reserve_budget "),
    ("budget settle", r"^BudgetStages\.settle_budget "),
    ("usage read", r"^BudgetStages\.read_usage "),
    ("halt check", r"^BudgetStages\.check_not_halted "),
    ("metrics", r"^(DecisionAudit\._finish |PipelineState\._child )"),
    ("tool rules, flows", r"^RequestStages\.(authorize_tools|check_flows) "),
    ("classify", r"^classify \(classify"),
    ("body read", r"^RequestStages\.read_body "),
    ("target, query, overrides", r"^(resolve_explicit |canonical_query |check_meaning_overrides )"),
    ("headers (forward, answer)", r"^(forward_headers|response_headers) \(relay_headers"),
    ("spool writer thread", r"^SpoolWriter\._run "),
    ("relay answer (upstream read, h1)", r"^(AnswerRelay\.relay_whole|StreamRelay\.relay_stream) "),
    ("upstream request (client, h1)", r"^Pipeline\.forward "),
    ("pipeline, other", r"^Pipeline\.(handle|identify) "),
    ("aiohttp server (parse, write)", r"\((aiohttp/)?(web_protocol|http_writer|web_response)\.py"),
    ("llhttp server (parse, write)", r"^\w+\.\w+ \((llhttp_server|wire_request)\.py"),
    ("aiohttp client (connection)", r"\((aiohttp/)?client_proto\.py"),
)


def stage_table(raw: Path, cpu_per_call_us: float) -> dict[str, float]:
    """CPU per call of each stage (us): its share of the samples times the measured CPU
    per call (py-spy leaves idle threads out; on tmpfs nothing blocks in the kernel)."""
    patterns = [(name, re.compile(rx)) for name, rx in STAGES]
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)", ")", f) for f in stack.split(";")]
        if frames[-1].startswith(("Condition.wait", "wait (threading")):
            continue
        n = int(count)
        total += n
        stage = "event loop, other"
        for frame in reversed(frames):
            hit = next((name for name, rx in patterns if rx.search(frame)), None)
            if hit is not None:
                stage = hit
                break
        counts[stage] += n
    return {name: cpu_per_call_us * n / total for name, n in counts.most_common()} if total else {}


def thread_cpu() -> dict[tuple[int, str], float]:
    """CPU seconds (user + system) of each thread of this process, by (id, name)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[tuple[int, str], float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the thread ended
        tid = int(task.name)
        name = names.get(tid, "other")
        out[(tid, name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


async def profile(args: argparse.Namespace, tmp: Path, up_port: int) -> None:
    from haltgate.cli import sidecar as cli_sidecar
    from haltgate.sidecar.server import Sidecar
    from haltgate.sidecar.startup import Listen, SidecarSettings

    policy_path = tmp / "policy.yaml"
    policy_path.write_text(
        yaml.safe_dump(overhead.policy(f"http://127.0.0.1:{up_port}", guardrails=args.guardrails))
    )
    port = overhead.free_port()
    settings = SidecarSettings(
        policy_path=policy_path,
        state_dir=tmp / "state" if args.state == "tmpfs" else None,
        audit_dir=tmp / "audit" if args.audit == "spool" else None,
        explicit=Listen("127.0.0.1", port),
        admin=Listen("127.0.0.1", 0),
        metrics=Listen("127.0.0.1", 0),
        **({"http_server": args.http_server} if args.http_server else {}),
    )
    sidecar = Sidecar(settings)
    await sidecar.start()
    freeze = getattr(cli_sidecar, "freeze_startup_objects", None)
    if freeze is not None:  # as `haltgate sidecar` does (absent from older trees: A/B runs)
        freeze()
    try:
        url = f"http://127.0.0.1:{port}/llm/v1/chat/completions"
        load = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            LOAD.format(bench=str(REPO / "bench")),
            url,
            str(args.seconds),
            str(args.concurrency),
            str(args.rate),
            "1" if args.stream else "0",
            stdout=subprocess.PIPE,
        )
        spy = None
        if args.py_spy:
            await asyncio.sleep(0.5)  # past the load generator's warm-up
            spy = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(os.getpid()),
                "--duration",
                str(max(1, int(args.seconds) - 1)),
                "--rate",
                "500",
                "--format",
                "raw",
                "-o",
                str(tmp / "spy.txt"),
                # --native must pause the process to unwind its C stacks
                *(["--native"] if args.native else ["--nonblocking"]),
                *(["--gil"] if args.gil else []),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        cpu0 = time.process_time()
        threads0 = thread_cpu()
        out, _ = await load.communicate()
        cpu = time.process_time() - cpu0
        threads1 = thread_cpu()
        if spy is not None:
            await spy.wait()
        n, wall = out.split()
        print(
            f"audit={args.audit} state={args.state} disk={args.disk} "
            + (f"rate={args.rate:g}/s" if args.rate else f"concurrency={args.concurrency}")
            + ", load "
            f"average {os.getloadavg()[0]:.1f}: {int(n)} requests in {float(wall):.1f} s, "
            f"sidecar CPU {cpu:.2f} s -> {int(n) / cpu:.0f} requests per CPU-second "
            f"({cpu / int(n) * 1e6:.0f} us each, warm-up included)"
        )
        by_thread = collections.Counter(
            {
                name: threads1[key] - threads0.get(key, 0.0)
                for key, name in ((k, k[1]) for k in threads1)
            }
        )
        print(
            "   CPU per request by thread: "
            + ", ".join(
                f"{name} {seconds / int(n) * 1e6:.0f} us"
                for name, seconds in by_thread.most_common()
                if seconds > 0
            )
        )
        if spy is not None:
            summarise(tmp / "spy.txt")
            if args.keep is not None:
                args.keep.write_bytes((tmp / "spy.txt").read_bytes())
            per_call = cpu / int(n) * 1e6
            print(f"CPU per call by stage (us; of {per_call:.0f} us per call):")
            for name, us in stage_table(tmp / "spy.txt", per_call).items():
                print(f"  {us:7.1f}  {name}")
    finally:
        await sidecar.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="requests/s, one at a time (sparse traffic, as sidecar_overhead.py's latency "
        "run: 50/s per target); 0: the closed loop",
    )
    ap.add_argument("--audit", choices=["spool", "memory"], default="spool")
    ap.add_argument("--state", choices=["tmpfs", "none"], default="tmpfs")
    ap.add_argument(
        "--disk",
        action="store_true",
        help="spool and state on disk (a temporary directory) instead of /dev/shm",
    )
    ap.add_argument("--py-spy", action="store_true", help="record and print a profile")
    ap.add_argument(
        "--gil",
        action="store_true",
        help="with --py-spy: sample only the thread holding the GIL (Python CPU time; "
        "system calls that release the GIL, such as fdatasync, are left out)",
    )
    ap.add_argument(
        "--native", action="store_true", help="with --py-spy: native frames too (C, uvloop)"
    )
    ap.add_argument(
        "--guardrails",
        action="store_true",
        help="the policy with guardrails on (sidecar_overhead.py's GUARDRAILS)",
    )
    ap.add_argument("--stream", action="store_true", help="with --rate: streamed chat requests")
    ap.add_argument("--keep", type=Path, help="with --py-spy: copy the raw profile here")
    ap.add_argument(
        "--http-server",
        choices=["llhttp", "aiohttp"],
        help="the explicit port's server (default: the sidecar's default)",
    )
    args = ap.parse_args()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p),
    }
    overhead.run_with_standin_llm(
        lambda tmp, port: profile(args, tmp, port),
        prefix="hg-profile-",
        tmp_dir=None if args.disk else "/dev/shm",
        env=env,
    )


if __name__ == "__main__":
    main()
