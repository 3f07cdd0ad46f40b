#!/usr/bin/env python3
"""Write docs/reference.md: every field of GovernancePolicy and BudgetPool, from crds/.

The CRDs are generated from the pydantic models (hack/crdgen.py), so this table
is the models' own documentation: type, default, allowed values, bounds, description.
`tests/chart/test_reference.py` fails when docs/reference.md is stale; rerun
`.venv/bin/python hack/gen_reference.py` after `make crds`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CRDS = [
    ("GovernancePolicy", "haltgate.dev_governancepolicies.yaml"),
    ("BudgetPool", "haltgate.dev_budgetpools.yaml"),
]


def _type(s: dict[str, Any]) -> str:
    if "enum" in s:
        return " \\| ".join(f"`{v}`" for v in s["enum"])
    t = s.get("type")
    if t == "array":
        return f"list of {_type(s.get('items', {}))}"
    if t == "object" and "properties" not in s and "additionalProperties" in s:
        return f"map of {_type(s['additionalProperties'] or {})}"
    if s.get("x-kubernetes-int-or-string"):
        return "int or string"
    if "anyOf" in s or "oneOf" in s:
        return " or ".join(_type(x) for x in s.get("anyOf") or s.get("oneOf"))
    return str(t or "any")


def _notes(s: dict[str, Any], required: bool) -> str:
    parts = []
    if required:
        parts.append("**required**")
    if "default" in s:
        shown = yaml.safe_dump(s["default"], default_flow_style=True).strip()
        parts.append(f"default `{shown.removesuffix('...').strip()}`")
    # OpenAPI v3 (the CRDs) marks an exclusive bound with a flag next to the bound:
    # minimum 0 + exclusiveMinimum true reads "> 0", not "≥ 0".
    words = {
        "minimum": ">" if s.get("exclusiveMinimum") is True else "≥",
        "maximum": "<" if s.get("exclusiveMaximum") is True else "≤",
    }
    for key, word in (
        ("minimum", words["minimum"]),
        ("maximum", words["maximum"]),
        ("exclusiveMinimum", ">"),
        ("exclusiveMaximum", "<"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
    ):
        if key in s and not isinstance(s[key], bool):
            parts.append(f"{word} {s[key]}")
    if "pattern" in s:
        parts.append(f"pattern `{s['pattern']}`")
    return "; ".join(parts)


def _rows(path: str, s: dict[str, Any], required: bool, out: list[str]) -> None:
    desc = " ".join(str(s.get("description", "")).split()).replace("|", "\\|")
    out.append(f"| `{path}` | {_type(s)} | {_notes(s, required)} | {desc} |")
    item = s.get("items", {}) if s.get("type") == "array" else s
    req = set(item.get("required", []))
    for name, child in (item.get("properties") or {}).items():
        _rows(f"{path}{'[]' if item is not s else ''}.{name}", child, name in req, out)


def render() -> str:
    lines = [
        "# GovernancePolicy and BudgetPool reference",
        "",
        "Every field, generated from `crds/` (which is generated from the models in",
        "`governance/haltgate/governance/policy.py`) by `hack/gen_reference.py`: do not edit",
        "by hand. How the fields work together: [policies](policies.md),",
        "[budgets](budgets.md), [guardrails](guardrails.md), [pools](pools.md),",
        "[audit](audit.md).",
        "",
    ]
    for kind, filename in CRDS:
        crd = yaml.safe_load((REPO / "crds" / filename).read_text())
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        names = crd["spec"]["names"]
        short = ", ".join(names.get("shortNames", []))
        lines += [
            f"## {kind}",
            "",
            f"`{crd['spec']['group']}/{version['name']}`, namespaced; "
            f"`kubectl get {names['plural']}`" + (f" (short: {short})" if short else "") + ".",
            "",
        ]
        for section in ("spec", "status"):
            if section not in schema.get("properties", {}):
                continue
            sub = schema["properties"][section]
            lines += [
                f"### `{section}`",
                "",
                "| field | type | constraints | description |",
                "|---|---|---|---|",
            ]
            rows: list[str] = []
            req = set(sub.get("required", []))
            for name, child in (sub.get("properties") or {}).items():
                _rows(f"{section}.{name}", child, name in req, rows)
            lines += [*rows, ""]
    return "\n".join(lines)


if __name__ == "__main__":
    target = REPO / "docs" / "reference.md"
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if target.exists() and target.read_text() == text else 1)
    target.write_text(text)
    print(f"wrote {target}")
