"""The building blocks every haltgate dashboard is made of: variables, targets, panels, layout.

The dashboards themselves are in ``dashboard_<name>.py``; ``hack/dashboards.py`` writes them.
"""

from __future__ import annotations

from typing import Any

SEL = 'namespace=~"$namespace", workload=~"$workload"'
"""The selector every sidecar query uses (identity labels of the sidecar's samples)."""
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"


def templating(single_workload: bool = False) -> dict[str, Any]:
    def var(name: str, query: str, multi: bool) -> dict[str, Any]:
        return {
            "name": name,
            "label": name.capitalize(),
            "type": "query",
            "datasource": DS,
            "query": {"query": query, "refId": f"{name}-var"},
            "definition": query,
            "refresh": 2,
            "sort": 1,
            "multi": multi,
            "includeAll": multi,
            "allValue": ".*" if multi else None,
            "current": {"selected": True, "text": "All", "value": "$__all"} if multi else {},
        }

    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
            },
            var("namespace", "label_values(haltgate_requests_total, namespace)", True),
            var(
                "workload",
                'label_values(haltgate_requests_total{namespace=~"$namespace"}, workload)',
                not single_workload,
            ),
        ]
    }


class Layout:
    """Places panels left to right on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, w: int, h: int) -> dict[str, int]:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos


def target(expr: str, legend: str = "", *, instant: bool = False, ref: str = "A") -> dict[str, Any]:
    t: dict[str, Any] = {
        "refId": ref,
        "datasource": DS,
        "expr": expr,
        "legendFormat": legend or "__auto",
    }
    if instant:
        t.update({"instant": True, "range": False, "format": "table"})
    else:
        t.update({"instant": False, "range": True})
    return t


def panel(
    layout: Layout,
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    description: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    panel: dict[str, Any] = {
        "id": layout.next_id,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": layout.place(w, h),
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    layout.next_id += 1
    if kind == "timeseries":
        panel["fieldConfig"]["defaults"]["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
        }
        panel["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "multi"},
        }
    elif kind == "stat":
        panel["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"]},
            "colorMode": "value",
            "graphMode": "none",
        }
    if extra:
        panel.update(extra)
    return panel


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[dict[str, Any]],
    *,
    single_workload: bool = False,
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["haltgate"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "graphTooltip": 1,
        "templating": templating(single_workload),
        "annotations": {"list": []},
        "links": [
            {
                "title": "haltgate dashboards",
                "type": "dashboards",
                "tags": ["haltgate"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "panels": panels,
    }
