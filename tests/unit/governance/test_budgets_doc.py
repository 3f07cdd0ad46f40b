"""docs/budgets.md lists every dimension and reason code the engine can return."""

from __future__ import annotations

from pathlib import Path

from haltgate.governance.engine import codes

DOC = Path(__file__).resolve().parents[3] / "docs" / "budgets.md"


def test_every_dimension_and_code_is_documented() -> None:
    text = DOC.read_text()
    for dim in codes.DIMENSIONS:
        assert f"`{dim.name}`" in text, dim.name
        assert f"`{dim.code}`" in text, dim.code
        assert dim.failure_type.value in text
    constants = [v for k, v in vars(codes).items() if k.isupper() and isinstance(v, str)]
    assert constants  # the module's code constants
    for code in constants:
        assert f"`{code}`" in text, code
