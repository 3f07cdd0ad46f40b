"""Where a sidecar spends its CPU: one in-process sidecar under a closed-loop load.

Run: ``.venv/bin/python bench/sidecar_profile.py [--seconds 5] [--concurrency 16]
[--rate N] [--audit spool|memory] [--state tmpfs|none] [--disk] [--py-spy [--gil]]``

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
import tempfile
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
run = o.paced(url, seconds, rate) if rate else o.closed_loop(url, seconds, concurrency)
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
    from haltgate.sidecar.server import Sidecar
    from haltgate.sidecar.startup import Listen, SidecarSettings

    policy_path = tmp / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(overhead.policy(f"http://127.0.0.1:{up_port}")))
    port = overhead.free_port()
    settings = SidecarSettings(
        policy_path=policy_path,
        state_dir=tmp / "state" if args.state == "tmpfs" else None,
        audit_dir=tmp / "audit" if args.audit == "spool" else None,
        explicit=Listen("127.0.0.1", port),
        admin=Listen("127.0.0.1", 0),
        metrics=Listen("127.0.0.1", 0),
    )
    sidecar = Sidecar(settings)
    await sidecar.start()
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
                "--nonblocking",
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
    args = ap.parse_args()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p),
    }
    up_port = overhead.free_port()
    upstream = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "haltgate.testbed.standins.llm",
            "--port",
            str(up_port),
            "--no-record",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        overhead.wait_port(up_port, upstream, "stand-in LLM")
        where = None if args.disk else "/dev/shm"
        with tempfile.TemporaryDirectory(prefix="hg-profile-", dir=where) as tmp:
            import uvloop

            uvloop.run(profile(args, Path(tmp), up_port))
    finally:
        upstream.terminate()
        upstream.wait(10)


if __name__ == "__main__":
    main()
