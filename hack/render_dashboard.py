"""Render a haltgate Grafana dashboard to a PNG from a real Prometheus after a load run.

    .venv/bin/python hack/render_dashboard.py                  # docs/dashboard-fleet.png
    .venv/bin/python hack/render_dashboard.py --dashboard haltgate-agent.json \
        --workload batch --out /tmp/agent.png --seconds 30

The fleet of tests/observability/loadbed.py (three sidecars, the stand-in LLM, Debian's
Prometheus scraping every second) runs its load for ``--seconds``, then
``haltgate.testbed.dashboard`` draws the dashboard's panels from that Prometheus.
Needs: ``make deps`` (prometheus); matplotlib (the dev extra).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from haltgate.testbed.dashboard import DASHBOARDS, Renderer  # noqa: E402
from tests.observability import loadbed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dashboard",
        default="haltgate-fleet.json",
        help="file name under charts/haltgate/dashboards/",
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard-fleet.png")
    parser.add_argument("--seconds", type=float, default=60.0, help="load run duration")
    parser.add_argument("--namespace", default=".*")
    parser.add_argument("--workload", default=".*")
    args = parser.parse_args()
    dashboard = json.loads((DASHBOARDS / args.dashboard).read_text())
    with (
        tempfile.TemporaryDirectory(prefix="haltgate-render-") as tmp,
        loadbed.running_fleet(Path(tmp)) as fleet,
    ):
        start = time.time()
        report = loadbed.drive(
            fleet, seconds=args.seconds, halt_cycles=max(2, int(args.seconds / 10))
        )
        loadbed.wait_scraped(fleet)
        time.sleep(2.5)
        end = time.time()
        Renderer(fleet.prometheus, start, end, args.namespace, args.workload).draw(
            dashboard, args.out
        )
    print(
        f"{args.out}: {sum(report.sent.values())} calls in "
        f"{report.ended - report.started:.0f} s, statuses "
        f"{dict(sorted(report.statuses.items()))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
