"""docs/sidecar.md lists every error code the sidecar and the governance core can answer
with (issue 16: ``pool_unreachable``, ``pool_unconfigured`` and ``invalid_chain_header``
were missing). The codes are found in the source, so a new one fails this test until it is
documented."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from haltgate.governance import opa_decision, tools
from haltgate.governance.engine import codes

REPO = Path(__file__).resolve().parents[2]
SOURCES = (
    REPO / "sidecar" / "haltgate" / "sidecar",
    REPO / "governance" / "haltgate" / "governance",
)


def _raised_codes() -> set[str]:
    """``code="..."`` passed to any ``...Error(...)`` and ``code = "..."`` class attributes
    of error classes; the first argument of transparent mode's ``Refused``/
    ``DestinationMismatch``."""
    found: set[str] = set()
    for root in SOURCES:
        for path in root.rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                    if name.endswith("Error"):
                        found |= {
                            kw.value.value
                            for kw in node.keywords
                            if kw.arg == "code"
                            and isinstance(kw.value, ast.Constant)
                            and isinstance(kw.value.value, str)
                        }
                    if (
                        name in ("Refused", "DestinationMismatch")
                        and node.args
                        and isinstance(node.args[0], ast.Constant)
                    ):
                        found.add(str(node.args[0].value))
                if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                    for stmt in node.body:
                        if (
                            isinstance(stmt, ast.Assign)
                            and isinstance(stmt.value, ast.Constant)
                            and any(
                                isinstance(t, ast.Name) and t.id == "code" for t in stmt.targets
                            )
                            and isinstance(stmt.value.value, str)
                        ):
                            found.add(stmt.value.value)
    return found


def _module_codes() -> set[str]:
    out = {d.code for d in vars(codes).values() if isinstance(d, codes.Dimension)}
    out |= {
        v
        for k, v in vars(codes).items()
        if k.isupper() and isinstance(v, str) and k not in ("RESET", "LIFTED")
    }
    for module in (opa_decision, tools):
        out |= {v for k, v in vars(module).items() if k.startswith("CODE_") and isinstance(v, str)}
    return out


def documented() -> set[str]:
    text = (REPO / "docs" / "sidecar.md").read_text()
    return set(re.findall(r"`([a-z][a-z0-9_]+)`", text))


def test_every_raised_code_is_documented() -> None:
    raised = _raised_codes() | _module_codes()
    assert {"pool_unreachable", "pool_unconfigured", "invalid_chain_header"} <= raised
    missing = sorted(raised - documented())
    assert not missing, f"codes missing from docs/sidecar.md: {missing}"
