"""The demo's last picture: the fleet dashboard, drawn from the Prometheus that scraped it.

``haltgate demo`` starts a real Prometheus (Debian's package, ``make deps``) next to the
sidecar before the agent runs: on the host in explicit mode, in the upstream network
namespace in netns mode (the only place that reaches the pod's metrics port, as a cluster's
Prometheus would). After the agent is halted it waits until Prometheus holds the sidecar's
final request count, then draws the chart's fleet dashboard from it
(``haltgate.testbed.dashboard``, matplotlib) into a PNG, in the background while the demo
reads the audit trail; the demo's last step waits for the picture. Both run as
subprocesses, so that in netns mode they run inside the namespace.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from haltgate.cli.demo_setting import POD_IP
from haltgate.cli.demo_shell import DemoError, run_checked
from haltgate.cli.demo_state import Demo

PROMETHEUS_PORT = 9090
"""Port of the demo's Prometheus (its own namespace in netns mode; a free one otherwise)."""
AGENT_PACE_SECONDS = 0.5
"""The agent's pause between calls when a picture is drawn: its dozen calls then span a
few one-second scrapes, so rates and latencies have points to draw."""
WAIT_SECONDS = 60.0
"""Bound on Prometheus becoming ready and catching up with the sidecar (slow machines)."""


@dataclass
class Picture:
    """A Prometheus scraping the demo's sidecar, and where its picture goes."""

    base: str
    """Prometheus's base URL (inside the upstream namespace in netns mode)."""
    started: float
    """Epoch seconds when it was ready: the start of the picture's range."""
    out: Path
    drawing: subprocess.Popen[bytes] | None = None
    """The drawing process, while it runs."""


def prometheus_step(d: Demo) -> None:
    d.console.step("Prometheus scraping the sidecar (for the dashboard at the end)")
    d.drawing = start(d, d.dashboard_png)


def dashboard_step(d: Demo) -> None:
    d.console.step("Prometheus has every call: the fleet dashboard is drawn from it")
    draw(d, d.drawing)


def picture_step(d: Demo) -> None:
    d.console.step("The fleet dashboard of this run, as a picture")
    finish(d, d.drawing)


def missing() -> str | None:
    """Why no picture can be drawn here (say it, do not fail the demo), or None."""
    from haltgate.testbed import prometheus

    if prometheus.binary() is None:
        return "prometheus is not installed (`make deps` installs it)"
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is not installed (the dev extra: `make install`)"
    return None


def _in_place(demo: Demo, argv: list[str]) -> list[str]:
    """``argv`` run where the sidecar's metrics are reachable (netns: the upstream side)."""
    return demo.topo.upstream.exec_argv(argv) if demo.mode == "netns" else argv


def _tool(demo: Demo, *args: str) -> list[str]:
    return _in_place(demo, [sys.executable, "-m", "haltgate.testbed.dashboard", *args])


def start(demo: Demo, out: Path) -> Picture | None:
    """Start Prometheus scraping the sidecar's metrics; None (said why) when it cannot."""
    from haltgate.testbed import prometheus

    why = missing()
    if why is not None:
        demo.console.info(f"no dashboard picture: {why}")
        return None
    if demo.mode == "netns":
        target, listen = f"{POD_IP}:{demo.ports['metrics']}", f"127.0.0.1:{PROMETHEUS_PORT}"
    else:
        target = f"127.0.0.1:{demo.ports['metrics']}"
        listen = f"127.0.0.1:{demo.free_port()}"
    config = prometheus.write_config(
        demo.workdir / "prometheus.yml", [target], labels={"pod": "researcher-demo"}
    )
    binary = prometheus.binary()
    assert binary is not None
    demo.spawn(
        "prometheus",
        _in_place(demo, prometheus.argv(binary, config, demo.workdir / "prometheus-data", listen)),
    )
    base = f"http://{listen}"
    _run(
        demo,
        _in_place(
            demo,
            [
                sys.executable,
                "-m",
                "haltgate.testbed.prometheus",
                "--prometheus",
                base,
                "--wait-up",
                str(WAIT_SECONDS),
            ],
        ),
    )
    demo.console.ok(
        f"Prometheus on {base} scrapes the sidecar's metrics ({target}) every "
        f"{prometheus.SCRAPE_INTERVAL}"
    )
    return Picture(base, time.time(), out)


def draw(demo: Demo, picture: Picture | None) -> None:
    """Wait until Prometheus holds the sidecar's final count, then start drawing the fleet
    dashboard into ``picture.out`` in the background (:func:`finish` waits for it)."""
    if picture is None:
        return
    expected = sum(
        float(line.rsplit(" ", 1)[1])
        for line in demo.metrics_text.splitlines()
        if line.startswith("haltgate_requests_total{")
    )
    _run(
        demo,
        _in_place(
            demo,
            [
                sys.executable,
                "-m",
                "haltgate.testbed.prometheus",
                "--prometheus",
                picture.base,
                "--wait-up",
                str(WAIT_SECONDS),
                "--expect-requests",
                f"{expected:g}",
            ],
        ),
    )
    time.sleep(1.5)  # one more scrape: rates over the last interval see the end too
    picture.out.parent.mkdir(parents=True, exist_ok=True)
    log = (demo.workdir / "logs" / "dashboard.log").open("wb")
    picture.drawing = subprocess.Popen(
        _tool(
            demo,
            "--prometheus",
            picture.base,
            "--start",
            f"{picture.started:.3f}",
            "--end",
            f"{time.time():.3f}",
            "--out",
            str(picture.out),
            "--what",
            "the demo's run",
            "--wait-up",
            "0",
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    demo.stack.callback(_stop, picture)
    demo.console.ok(
        f"Prometheus holds all {expected:g} calls; drawing the chart's fleet "
        "dashboard from it (in the background)"
    )


def finish(demo: Demo, picture: Picture | None) -> None:
    """Wait for the drawing and say where the picture is."""
    if picture is None or picture.drawing is None:
        demo.console.info("no dashboard picture (see the Prometheus step)")
        return
    try:
        code = picture.drawing.wait(timeout=WAIT_SECONDS + 60)
    except subprocess.TimeoutExpired as e:
        raise DemoError("the dashboard picture took too long") from e
    if code != 0:
        log = (demo.workdir / "logs" / "dashboard.log").read_text(errors="replace")
        raise DemoError(f"the dashboard picture failed:\n{log[-1500:]}")
    demo.console.ok(
        f"fleet dashboard of this run (the chart's Grafana JSON, drawn from "
        f"the Prometheus that scraped the sidecar): {picture.out}"
    )


def _stop(picture: Picture) -> None:
    if picture.drawing is not None and picture.drawing.poll() is None:
        picture.drawing.kill()
        picture.drawing.wait(timeout=10)


def _run(demo: Demo, argv: list[str]) -> None:
    res = run_checked(argv, timeout=WAIT_SECONDS + 60, check=False)
    if res.returncode != 0:
        raise DemoError(f"the dashboard picture failed:\n{(res.stderr or res.stdout)[-1500:]}")
