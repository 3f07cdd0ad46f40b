"""Generate the Grafana dashboards of the chart (charts/haltgate/dashboards/*.json).

    .venv/bin/python hack/dashboards.py            # write the JSON files
    .venv/bin/python hack/dashboards.py --check    # exit 1 if a file is out of date

The JSON files are what the chart ships (ConfigMaps labelled ``grafana_dashboard``); this
script keeps the four dashboards consistent (same variables, same selector, same layout
rules). Every dashboard is templated by ``datasource``, ``namespace`` and ``workload``.
The dashboards are built in dashboard_<name>.py from the blocks of dashboard_build.py.
Every expression is checked against a real Prometheus by tests/observability.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dashboard_agent import agent
from dashboard_audit import audit
from dashboard_fleet import fleet
from dashboard_guardrails import guardrails

OUT = Path(__file__).resolve().parent.parent / "charts" / "haltgate" / "dashboards"


DASHBOARDS = {
    "haltgate-fleet.json": fleet,
    "haltgate-agent.json": agent,
    "haltgate-guardrails.json": guardrails,
    "haltgate-audit.json": audit,
}


def render(name: str) -> str:
    """The JSON text of one dashboard file."""
    return json.dumps(DASHBOARDS[name](), indent=2, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    stale = []
    args.out.mkdir(parents=True, exist_ok=True)
    for name in DASHBOARDS:
        path = args.out / name
        text = render(name)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("out of date (run hack/dashboards.py):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
