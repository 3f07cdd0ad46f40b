"""Benchmark of the injection webhook against the real kube-apiserver.

    .venv/bin/python bench/webhook.py [--n 500]

Starts the test bed control plane (etcd + kube-apiserver) and ``haltgate operator``, then
creates ``--n`` opted-in pods (they go through the webhook) and, as the baseline in the same
run, ``--n`` ordinary pods (matchConditions keep them away from the webhook). Prints:

- the webhook's admission latency p50/p99 as the apiserver measured it
  (``apiserver_admission_webhook_admission_duration_seconds``, interpolated within its
  buckets: 5 ms, 25 ms, 100 ms, ... so read it as a bound), target p99 <= 20 ms;
- the operator's own time per review (its finer-grained histogram);
- client-side pod create latency p50/p99, opted-in vs ordinary, and their ratio.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubernetes import client  # noqa: E402

from haltgate.testbed.controlplane import ControlPlane  # noqa: E402
from tests.operator.conftest import OperatorUnderTest, install_crds  # noqa: E402

APISERVER_METRIC = "apiserver_admission_webhook_admission_duration_seconds"
OPERATOR_METRIC = "haltgate_operator_admission_duration_seconds"


def buckets(text: str, metric: str, **labels: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of one histogram series, summed over series
    that carry ``labels``."""
    acc: dict[float, float] = {}
    pat = re.compile(rf"^{metric}_bucket\{{(.*)\}} ([0-9.e+-]+)$")
    for line in text.splitlines():
        m = pat.match(line)
        if not m:
            continue
        lbl = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if any(lbl.get(k) != v for k, v in labels.items()):
            continue
        le = float("inf") if lbl["le"] == "+Inf" else float(lbl["le"])
        acc[le] = acc.get(le, 0.0) + float(m.group(2))
    return sorted(acc.items())


def quantile(cum: list[tuple[float, float]], q: float) -> float:
    """Prometheus-style histogram_quantile (linear within the bucket)."""
    if not cum or cum[-1][1] == 0:
        return float("nan")
    rank = q * cum[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in cum:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            span = count - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / span if span else 0)
        prev_le, prev_count = le, count
    return prev_le


def delta(
    after: list[tuple[float, float]], before: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    b = dict(before)
    return [(le, c - b.get(le, 0.0)) for le, c in after]


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[int(q * 100) - 1]


def create_pods(
    core: client.CoreV1Api, ns: str, n: int, prefix: str, opted_in: bool
) -> list[float]:
    times = []
    for i in range(n):
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{prefix}-{i}",
                "labels": {"app": "agent"},
                "annotations": {"haltgate.dev/inject": "true"} if opted_in else {},
            },
            "spec": {"containers": [{"name": "agent", "image": "x"}]},
        }
        t = time.perf_counter()
        core.create_namespaced_pod(ns, body)
        times.append(time.perf_counter() - t)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="pods per kind (default 500)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="haltgate-bench-webhook-") as tmp:
        work = Path(tmp)
        plane = ControlPlane(work / "kube").start()
        op = None
        try:
            install_crds(plane)
            plane.kubectl("create", "namespace", "haltgate-system", check=True)
            (work / "op").mkdir()
            op = OperatorUnderTest(plane, work / "op", admin_port=17020)
            # Production resync intervals, not the tests' short ones.
            for flag, value in (("--halt-resync", "5"), ("--status-resync", "30")):
                op.argv[op.argv.index(flag) + 1] = value
            op.start()
            plane.kubectl("create", "namespace", "bench", check=True)
            plane.kubectl(
                "apply",
                "-f",
                "-",
                check=True,
                input="""
apiVersion: haltgate.dev/v1alpha1
kind: GovernancePolicy
metadata: {name: bench, namespace: bench}
spec: {selector: {matchLabels: {app: agent}}, budgets: {calls: {limit: 10}}}
""",
            )
            core = client.CoreV1Api(plane.api_client())
            # Warm-up: connections, the operator's first requests, the apiserver's caches.
            create_pods(core, "bench", 20, "warm", True)
            raw = plane.kubectl("get", "--raw", "/metrics", check=True).stdout
            before = buckets(raw, APISERVER_METRIC, name="annotated.inject.haltgate.dev")
            op_before = buckets(_get(op), OPERATOR_METRIC, webhook="inject")

            base = create_pods(core, "bench", args.n, "plain", False)
            inj = create_pods(core, "bench", args.n, "agent", True)

            raw = plane.kubectl("get", "--raw", "/metrics", check=True).stdout
            hook = delta(
                buckets(raw, APISERVER_METRIC, name="annotated.inject.haltgate.dev"), before
            )
            own = delta(buckets(_get(op), OPERATOR_METRIC, webhook="inject"), op_before)
        finally:
            if op is not None:
                op.stop()
            plane.stop()

    print(f"pods per kind: {args.n} (sequential creates, one client)")
    print(
        f"webhook admission (apiserver metric, bucket-interpolated): "
        f"p50 {quantile(hook, 0.5) * 1000:.1f} ms, p99 {quantile(hook, 0.99) * 1000:.1f} ms"
        f"  (target p99 <= 20 ms; reviews counted: {hook[-1][1]:.0f})"
    )
    share = {le: c / hook[-1][1] for le, c in hook} if hook and hook[-1][1] else {}
    print(
        "webhook reviews per apiserver bucket (cumulative): "
        + ", ".join(
            f"<= {le * 1000:g} ms: {v:.1%}"
            for le, v in share.items()
            if le != float("inf") and le <= 0.1
        )
    )
    print(
        f"operator time per review (own histogram): p50 {quantile(own, 0.5) * 1000:.2f} ms, "
        f"p99 {quantile(own, 0.99) * 1000:.2f} ms"
    )
    b50, b99, i50, i99 = (pct(base, 0.5), pct(base, 0.99), pct(inj, 0.5), pct(inj, 0.99))
    print(f"pod create, ordinary (baseline): p50 {b50 * 1000:.1f} ms, p99 {b99 * 1000:.1f} ms")
    print(f"pod create, opted-in (injected): p50 {i50 * 1000:.1f} ms, p99 {i99 * 1000:.1f} ms")
    print(f"ratio opted-in / ordinary: p50 {i50 / b50:.2f}x, p99 {i99 / b99:.2f}x")
    return 0


def _get(op: OperatorUnderTest) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5) as r:
        return r.read().decode()


if __name__ == "__main__":
    sys.exit(main())
