"""A real Prometheus (Debian's ``prometheus`` package) for the demo and the dashboard picture.

:func:`write_config` writes a scrape configuration for a list of targets; the caller starts
``prometheus`` with :func:`argv` (on the host, or inside a network namespace) and queries
it with :func:`api`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from haltgate.testbed.errors import TestbedError

SCRAPE_INTERVAL = "1s"
"""Short: a demo run lasts seconds, and every call should show up in the picture."""
API_TIMEOUT_SECONDS = 10.0


def binary() -> str | None:
    """Debian's ``prometheus`` (``make deps`` installs it), if installed."""
    return shutil.which("prometheus")


def write_config(
    path: Path,
    targets: list[str],
    *,
    job: str = "haltgate-sidecar",
    labels: dict[str, str] | None = None,
    rule_files: list[Path] | None = None,
) -> Path:
    """A scrape configuration for ``targets`` (``host:port``) written to ``path``."""
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(p) for p in rule_files or []],
        "scrape_configs": [
            {
                "job_name": job,
                "honor_labels": True,
                "static_configs": [{"targets": targets, "labels": labels or {}}],
            }
        ],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def argv(executable: str, config: Path, data_dir: Path, listen: str) -> list[str]:
    """The command line of a Prometheus with ``config``, its TSDB in ``data_dir``."""
    return [
        executable,
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address={listen}",
    ]


def substitute(
    expr: str,
    *,
    rate_interval: str = "15s",
    range_: str = "5m",
    namespace: str = ".*",
    workload: str = ".*",
) -> str:
    """Replace Grafana's variables the way Grafana would before sending the query."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$__range", range_)
        .replace("$namespace", namespace)
        .replace("$workload", workload)
    )


def api(base: str, path: str, **params: Any) -> Any:
    """``data`` of a Prometheus HTTP API answer (no proxy); raises TestbedError on errors."""
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else base + path
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=API_TIMEOUT_SECONDS) as r:
            doc = json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise TestbedError(f"prometheus {path}: {e}") from e
    if doc.get("status") != "success":
        raise TestbedError(f"prometheus {path}: {doc.get('error')}")
    return doc["data"]


def targets_up(base: str) -> bool:
    """True once every scrape target was scraped successfully."""
    try:
        active = api(base, "/api/v1/targets")["activeTargets"]
    except TestbedError:
        return False
    return bool(active) and all(t["health"] == "up" for t in active)


def holds(base: str, query: str, expected: float) -> bool:
    """True when ``query`` (a scalar-like instant query) has reached ``expected``."""
    try:
        result = api(base, "/api/v1/query", query=query)["result"]
    except TestbedError:
        return False
    return bool(result) and abs(float(result[0]["value"][1]) - expected) < 0.5


def wait_up(base: str, seconds: float) -> None:
    """Wait (bounded) until every scrape target of the Prometheus at ``base`` is up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if targets_up(base):
            return
        time.sleep(0.25)
    raise TestbedError(f"prometheus at {base}: targets not up after {seconds:.0f}s")


def wait_holds(base: str, query: str, expected: float, seconds: float) -> None:
    """Wait (bounded) until ``query`` reaches ``expected`` (Prometheus caught up)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if holds(base, query, expected):
            return
        time.sleep(0.25)
    raise TestbedError(
        f"prometheus at {base}: {query} did not reach {expected:g} in {seconds:.0f}s"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m haltgate.testbed.prometheus --prometheus URL --wait-up SECONDS``: wait
    until its targets are up (and, with ``--expect-requests``, until it holds the sidecars'
    final request count); run inside a network namespace by the demo."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--prometheus", required=True, help="base URL of the Prometheus")
    parser.add_argument("--wait-up", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument(
        "--expect-requests",
        type=float,
        default=None,
        metavar="N",
        help="then wait until sum(haltgate_requests_total) is N",
    )
    args = parser.parse_args(argv)
    try:
        wait_up(args.prometheus, args.wait_up)
        if args.expect_requests is not None:
            wait_holds(
                args.prometheus, "sum(haltgate_requests_total)", args.expect_requests, args.wait_up
            )
    except TestbedError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
