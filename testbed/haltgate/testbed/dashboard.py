"""A haltgate Grafana dashboard drawn as a PNG from a real Prometheus (no Grafana needed).

No Grafana server is available from the registries this project uses, so this draws the
dashboard's own panels (same layout, titles, units and PromQL, variables substituted the way
Grafana does) with matplotlib (the ``dev`` extra). The data is real: every panel query goes
to Prometheus's HTTP API (range queries for time series, instant queries for stats, bar
gauges and tables). Used by ``haltgate demo`` (the picture of the demo's own run) and by
``hack/render_dashboard.py`` (``docs/dashboard-fleet.png`` after a load run).

    python -m haltgate.testbed.dashboard --prometheus http://127.0.0.1:9090 \
        --start 1700000000 --end 1700000060 --out fleet.png
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from haltgate.testbed import prometheus

DASHBOARDS = Path(__file__).resolve().parents[3] / "charts" / "haltgate" / "dashboards"
"""The chart's dashboards in a source checkout (the demo and hack/ run from one)."""

import matplotlib  # noqa: E402  (the dev extra; imported here so the error names it)

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

BG = "#111217"
PANEL = "#181b1f"
BORDER = "#2c3235"
TEXT = "#ccccdc"
MUTED = "#8e8e9a"
PALETTE = [
    "#73bf69",
    "#f2cc0c",
    "#5794f2",
    "#ff9830",
    "#f2495c",
    "#b877d9",
    "#8ab8ff",
    "#ffb357",
    "#96d98d",
    "#ca95e5",
]
ROW_PX = 30
WIDTH_PX = 1800


def fmt(value: float, unit: str) -> str:
    """A value in the panel's Grafana unit, shortened the way Grafana shows it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "No data"
    if unit == "currencyUSD":
        if abs(value) < 0.01:
            return f"${value:.6f}"
        return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if value == 0 and unit != "currencyUSD":
        return "0"
    if unit == "s":
        if value < 0.001:
            return f"{value * 1e6:.0f} µs"
        return f"{value * 1000:.2f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "reqps":
        return f"{value:.2f} req/s"
    if abs(value) >= 1000:
        return f"{value / 1000:.1f} K"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def legend(fmt_: str, metric: dict[str, str]) -> str:
    if not fmt_ or fmt_ == "__auto":
        labels = {k: v for k, v in metric.items() if k != "__name__"}
        return ", ".join(f"{k}={v}" for k, v in labels.items()) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt_)


class Renderer:
    """Draws one dashboard from the Prometheus at ``base`` over ``[start, end]`` (epoch s)."""

    def __init__(
        self, base: str, start: float, end: float, namespace: str = ".*", workload: str = ".*"
    ) -> None:
        self.base = base
        self.start = start
        self.end = end
        self.range = f"{max(1, int(end - start))}s"
        self.namespace = namespace
        self.workload = workload
        self.step = max(1.0, (end - start) / 120)

    def expr(self, raw: str) -> str:
        return prometheus.substitute(
            raw,
            rate_interval="10s",
            range_=self.range,
            namespace=self.namespace,
            workload=self.workload,
        )

    def instant(self, raw: str) -> list[dict[str, Any]]:
        return list(
            prometheus.api(
                self.base, "/api/v1/query", query=self.expr(raw), time=f"{self.end:.3f}"
            )["result"]
        )

    def series(self, raw: str) -> list[dict[str, Any]]:
        return list(
            prometheus.api(
                self.base,
                "/api/v1/query_range",
                query=self.expr(raw),
                start=f"{self.start:.3f}",
                end=f"{self.end:.3f}",
                step=f"{self.step:.3f}",
            )["result"]
        )

    def draw(self, dashboard: dict[str, Any], out: Path, *, what: str = "load run") -> None:
        """Write ``dashboard`` (Grafana JSON) as a PNG to ``out``."""
        panels = dashboard["panels"]
        rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
        header_px = 70
        height_px = rows * ROW_PX + header_px + 10
        dpi = 100
        fig = plt.figure(figsize=(WIDTH_PX / dpi, height_px / dpi), dpi=dpi, facecolor=BG)
        when = datetime.fromtimestamp(self.end, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        fig.text(
            10 / WIDTH_PX,
            1 - 22 / height_px,
            dashboard["title"],
            color=TEXT,
            fontsize=15,
            fontweight="bold",
            va="center",
        )
        chips = (
            f"Data source: Prometheus    Namespace: {_chip(self.namespace)}    "
            f"Workload: {_chip(self.workload)}    Range: last {self.range} "
            f"({what} ending {when})"
        )
        fig.text(10 / WIDTH_PX, 1 - 50 / height_px, chips, color=MUTED, fontsize=10, va="center")
        for panel in panels:
            g = panel["gridPos"]
            pad = 4
            x = (g["x"] / 24) * WIDTH_PX + pad
            w = (g["w"] / 24) * WIDTH_PX - 2 * pad
            top = header_px + g["y"] * ROW_PX + pad
            h = g["h"] * ROW_PX - 2 * pad
            frame = fig.add_axes(
                (x / WIDTH_PX, 1 - (top + h) / height_px, w / WIDTH_PX, h / height_px)
            )
            frame.set_facecolor(PANEL)
            frame.set_xticks([])
            frame.set_yticks([])
            for spine in frame.spines.values():
                spine.set_color(BORDER)
            frame.text(
                8 / w,
                1 - 14 / h,
                panel["title"],
                transform=frame.transAxes,
                color=TEXT,
                fontsize=10,
                fontweight="bold",
                va="center",
            )
            inner = (x + 75, top + 28, w - 90, h - 62)
            kind = panel["type"]
            unit = panel["fieldConfig"]["defaults"].get("unit", "short")
            if kind == "stat":
                self._stat(frame, panel, unit)
            elif kind == "timeseries":
                ax = fig.add_axes(
                    (
                        inner[0] / WIDTH_PX,
                        1 - (inner[1] + inner[3]) / height_px,
                        inner[2] / WIDTH_PX,
                        inner[3] / height_px,
                    )
                )
                self._timeseries(ax, panel, unit)
            elif kind == "bargauge":
                ax = fig.add_axes(
                    (
                        (x + 150) / WIDTH_PX,
                        1 - (top + h - 12) / height_px,
                        (w - 240) / WIDTH_PX,
                        (h - 44) / height_px,
                    )
                )
                self._bars(ax, panel, unit)
            elif kind == "table":
                self._table(frame, panel, w, h)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, facecolor=BG, dpi=dpi)
        plt.close(fig)

    def _stat(self, frame: Any, panel: dict[str, Any], unit: str) -> None:
        result = self.instant(panel["targets"][0]["expr"])
        value = float(result[0]["value"][1]) if result else float("nan")
        color = PALETTE[0]
        mappings = panel["fieldConfig"]["defaults"].get("mappings") or []
        text = fmt(value, unit)
        for m in mappings:
            hit = m.get("options", {}).get(str(int(value))) if not math.isnan(value) else None
            if hit:
                text, color = hit["text"], hit.get("color", color)
        frame.text(
            0.5,
            0.42,
            text,
            transform=frame.transAxes,
            color=color,
            fontsize=26,
            fontweight="bold",
            ha="center",
            va="center",
        )

    def _timeseries(self, ax: Any, panel: dict[str, Any], unit: str) -> None:
        ax.set_facecolor(PANEL)
        n = 0
        for target in panel["targets"]:
            for s in self.series(target["expr"]):
                xs = [datetime.fromtimestamp(float(t), UTC) for t, _ in s["values"]]
                ys = [float(v) for _, v in s["values"]]
                color = PALETTE[n % len(PALETTE)]
                ax.plot(
                    xs,
                    ys,
                    color=color,
                    linewidth=1.4,
                    label=legend(target.get("legendFormat", ""), s["metric"]),
                )
                ax.fill_between(xs, ys, color=color, alpha=0.08)
                n += 1
        ax.tick_params(colors=MUTED, labelsize=7)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: fmt(v, unit)))
        ax.grid(color=BORDER, linewidth=0.6)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if n == 0:
            ax.text(0.5, 0.5, "No data", transform=ax.transAxes, color=MUTED, ha="center")
        else:
            ax.legend(
                loc="upper left",
                bbox_to_anchor=(0, -0.12),
                ncol=4,
                fontsize=7,
                frameon=False,
                labelcolor=TEXT,
            )

    def _bars(self, ax: Any, panel: dict[str, Any], unit: str) -> None:
        target = panel["targets"][0]
        result = self.instant(target["expr"])
        ax.set_facecolor(PANEL)
        names = [legend(target.get("legendFormat", ""), s["metric"]) for s in result][::-1]
        values = [float(s["value"][1]) for s in result][::-1]
        ax.barh(
            names, values, color=[PALETTE[i % len(PALETTE)] for i in range(len(values))], height=0.6
        )
        top = max(values) if values else 1
        for i, v in enumerate(values):
            ax.text(v + top * 0.02, i, fmt(v, unit), color=TEXT, va="center", fontsize=9)
        ax.set_xlim(0, top * 1.25 if top else 1)
        ax.tick_params(colors=TEXT, labelsize=9, length=0)
        ax.set_xticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)

    def _table(self, frame: Any, panel: dict[str, Any], w: float, h: float) -> None:
        result = self.instant(panel["targets"][0]["expr"])
        if not result:
            frame.text(0.5, 0.5, "No data", transform=frame.transAxes, color=MUTED, ha="center")
            return
        keys = sorted({k for s in result for k in s["metric"] if k != "__name__"})
        rows = [
            [s["metric"].get(k, "") for k in keys] + [fmt(float(s["value"][1]), "short")]
            for s in result
        ]
        lines = ["   ".join([*keys, "value"]), *("   ".join(r) for r in rows)]
        for i, line in enumerate(lines[:8]):
            frame.text(
                10 / w,
                1 - (40 + 18 * i) / h,
                line,
                transform=frame.transAxes,
                color=TEXT if i else MUTED,
                fontsize=9,
                family="monospace",
            )


def _chip(value: str) -> str:
    return "All" if value == ".*" else value


def render(
    base: str,
    start: float,
    end: float,
    out: Path,
    *,
    dashboard: str = "haltgate-fleet.json",
    what: str = "load run",
) -> Path:
    """Draw the chart's ``dashboard`` from the Prometheus at ``base`` into ``out``."""
    doc = json.loads((DASHBOARDS / dashboard).read_text())
    Renderer(base, start, end).draw(doc, out, what=what)
    return out


def _wait(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # bounded
        if check():
            return
        time.sleep(0.25)
    raise SystemExit(f"{what}: not after {seconds:.0f}s")


def main(argv: list[str] | None = None) -> int:
    """Wait for a Prometheus (``--wait-up``), then, given ``--out``, draw a dashboard."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True, help="base URL of the Prometheus")
    parser.add_argument(
        "--wait-up",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait (bounded) until every scrape target is up; 0: do not",
    )
    parser.add_argument(
        "--expect-requests",
        type=float,
        default=None,
        metavar="N",
        help="wait until sum(haltgate_requests_total) is N (the last scrape)",
    )
    parser.add_argument("--start", type=float, help="epoch seconds (default: 5 min ago)")
    parser.add_argument("--end", type=float, help="epoch seconds (default: now)")
    parser.add_argument("--out", type=Path, help="the PNG to write; without it only wait")
    parser.add_argument(
        "--dashboard",
        default="haltgate-fleet.json",
        help="file name under charts/haltgate/dashboards/",
    )
    parser.add_argument("--what", default="load run", help="what the range covers")
    args = parser.parse_args(argv)
    base = args.prometheus
    if args.wait_up > 0:  # 0: the targets may be gone already (the picture is of the past)
        _wait(lambda: prometheus.targets_up(base), args.wait_up, "prometheus targets up")
    if args.out is None:
        return 0
    if args.expect_requests is not None:
        _wait(
            lambda: prometheus.holds(base, "sum(haltgate_requests_total)", args.expect_requests),
            args.wait_up,
            "prometheus caught up with the sidecar",
        )
        time.sleep(1.5)  # one more scrape: rates over the last interval see the end too
    end = args.end if args.end is not None else time.time()
    start = args.start if args.start is not None else end - 300
    render(base, start, end, args.out, dashboard=args.dashboard, what=args.what)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
