"""Benchmark of the node agent's per-node work: finding pods in /proc, checking and installing
their rules in a network namespace.

    .venv/bin/python bench/node_agent.py [--procs 400] [--rounds 20] [--quick]

Prints:

- one /proc pass (``pod_netns.scan``) for 10 pending pods with the machine's processes, then
  with ``--procs`` more (sleeping children): the time per pass and per process, and the
  ratio of the two passes (the cost grows with the node's process count, not its pods);
- in a fresh network namespace (root only; skipped otherwise, with the reason): installing
  the rules, and checking rules that are already in place (what an agent restart does per
  pod), p50 over ``--rounds``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from haltgate.sidecar import iptables as rules  # noqa: E402
from haltgate.sidecar import netns_rules, pod_netns  # noqa: E402

PODS = [str(uuid.uuid4()) for _ in range(10)]


def process_count() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


def scan_ms(rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        pod_netns.scan(PODS)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def bench_scan(extra: int, rounds: int) -> None:
    base_n = process_count()
    base = scan_ms(rounds)
    children = [subprocess.Popen(["sleep", "600"]) for _ in range(extra)]
    try:
        more_n = process_count()
        more = scan_ms(rounds)
    finally:
        for child in children:
            child.kill()
        for child in children:
            child.wait(timeout=10)
    print(
        f"/proc scan, 10 pending pods, {base_n} processes: {base:.2f} ms "
        f"({base / base_n * 1000:.1f} us/process)"
    )
    print(
        f"/proc scan, 10 pending pods, {more_n} processes: {more:.2f} ms "
        f"({more / more_n * 1000:.1f} us/process); ratio {more / base:.2f}x for "
        f"{more_n / base_n:.2f}x the processes"
    )


def bench_rules(rounds: int) -> None:
    if os.geteuid() != 0:
        print("rules in a namespace: skipped (needs root for a network namespace)")
        return
    name = f"hgbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=20)
    try:
        config = rules.RuleConfig(proxy_uid=17337, dns_servers=("10.96.0.10",))
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        installs, checks, fast = [], [], []
        known: netns_rules.Listings = {}
        try:
            for _ in range(rounds):
                subprocess.run(
                    ["ip", "netns", "exec", name, "iptables", "-t", "nat", "-F"],
                    check=True,
                    timeout=20,
                )
                start = time.perf_counter()
                assert netns_rules.ensure_rules(fd, config) is netns_rules.Outcome.INSTALLED
                installs.append(time.perf_counter() - start)
                start = time.perf_counter()
                assert netns_rules.ensure_rules(fd, config) is netns_rules.Outcome.PRESENT
                checks.append(time.perf_counter() - start)
                netns_rules.ensure_rules(fd, config, known=known)  # learns the listing
                start = time.perf_counter()
                outcome = netns_rules.ensure_rules(fd, config, known=known)
                assert outcome is netns_rules.Outcome.PRESENT
                fast.append(time.perf_counter() - start)
        finally:
            os.close(fd)
        install, check = statistics.median(installs), statistics.median(checks)
        listed = statistics.median(fast)
        print(f"rules in a namespace (check + install + check): p50 {install * 1000:.0f} ms")
        print(
            f"rules already in place (check only, an agent restart): p50 {check * 1000:.0f} ms"
            f"; ratio to installing {check / install:.2f}"
        )
        print(
            f"rules already in place, listing known (the agent's later pods): p50 "
            f"{listed * 1000:.0f} ms; ratio to the rule-by-rule check {listed / check:.2f}"
        )
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=400, help="extra processes to scan")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args()
    procs, rounds = (50, 3) if args.quick else (max(1, min(args.procs, 2000)), args.rounds)
    bench_scan(procs, rounds)
    bench_rules(rounds)


if __name__ == "__main__":
    main()
