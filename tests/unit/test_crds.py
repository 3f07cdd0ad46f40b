"""The committed CRDs match the models, and their schemas are structural and documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack import crdgen

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
RENDERED = crdgen.render()

Node = dict[str, Any]


def _crds() -> list[tuple[str, Node]]:
    return [(name, yaml.safe_load(text)) for name, text in sorted(RENDERED.items())]


def _schema(crd: Node) -> Node:
    (version,) = crd["spec"]["versions"]
    schema: Node = version["schema"]["openAPIV3Schema"]
    return schema


def _walk(node: Node, path: str = "") -> Iterator[tuple[str, Node]]:
    """Every schema node with its path, e.g. ``.spec.budgets.tokens.limit``."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_committed_crds_are_up_to_date() -> None:
    on_disk = {p.name: p.read_text() for p in CRD_DIR.glob("*.yaml")}
    stale = sorted(n for n in RENDERED if on_disk.get(n) != RENDERED[n])
    extra = sorted(set(on_disk) - set(RENDERED))
    assert not stale and not extra, (
        f"crds/ differs from the models (stale: {stale}, unexpected: {extra}); run "
        "`make crds` (python hack/crdgen.py crds/) and commit the result"
    )


@pytest.mark.parametrize(("name", "crd"), _crds(), ids=[n for n, _ in _crds()])
class TestStructuralSchema:
    def test_every_node_has_a_type_or_preserves_unknown_fields(self, name: str, crd: Node) -> None:
        untyped = [
            p or "<root>"
            for p, n in _walk(_schema(crd))
            if not n.get("type")
            and not n.get("x-kubernetes-preserve-unknown-fields")
            and not n.get("x-kubernetes-int-or-string")
        ]
        assert not untyped, f"{name}: nodes without type: {untyped}"

    def test_every_node_is_described(self, name: str, crd: Node) -> None:
        bare = [
            p or "<root>"
            for p, n in _walk(_schema(crd))
            if not str(n.get("description", "")).strip() and p != ".metadata"
        ]
        assert not bare, f"{name}: nodes without description: {bare}"

    def test_metadata_is_left_to_kubernetes(self, name: str, crd: Node) -> None:
        # The apiserver refuses a CRD whose root metadata schema says anything but its type.
        assert _schema(crd)["properties"]["metadata"] == {"type": "object"}

    def test_no_json_schema_constructs_kubernetes_rejects(self, name: str, crd: Node) -> None:
        banned = {
            "$ref",
            "$defs",
            "anyOf",
            "oneOf",
            "allOf",
            "not",
            "const",
            "title",
            "definitions",
        }
        found = [(p, sorted(banned & set(n))) for p, n in _walk(_schema(crd)) if banned & set(n)]
        assert not found, f"{name}: {found}"
        for path, node in _walk(_schema(crd)):
            assert not ("properties" in node and "additionalProperties" in node), path
            if "enum" in node:
                assert node.get("type") == "string", f"{path}: enum on non-string"
                assert all(isinstance(v, str) for v in node["enum"]), path
            for bound in ("exclusiveMinimum", "exclusiveMaximum"):
                if bound in node:
                    assert isinstance(node[bound], bool), f"{path}: {bound} must be a flag"

    def test_required_fields_exist(self, name: str, crd: Node) -> None:
        for path, node in _walk(_schema(crd)):
            missing = set(node.get("required", ())) - set(node.get("properties", {}))
            assert not missing, f"{path}: required but not defined: {missing}"

    def test_names_status_and_columns(self, name: str, crd: Node) -> None:
        spec = crd["spec"]
        assert spec["group"] == "haltgate.dev"
        assert spec["scope"] == "Namespaced"
        assert spec["names"]["categories"] == ["haltgate"]
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.haltgate.dev"
        (version,) = spec["versions"]
        assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}
        columns = version["additionalPrinterColumns"]
        assert columns[-1] == {
            "name": "Age",
            "type": "date",
            "jsonPath": ".metadata.creationTimestamp",
        }
        paths = {p for p, _ in _walk(_schema(crd))}
        for column in columns[:-1]:
            assert column["jsonPath"] in paths, f"column {column['name']} points nowhere"


def test_short_names_and_kinds() -> None:
    by_kind = {crd["spec"]["names"]["kind"]: crd["spec"]["names"] for _, crd in _crds()}
    assert by_kind["GovernancePolicy"]["shortNames"] == ["govpol"]
    assert by_kind["BudgetPool"]["shortNames"] == ["bpool"]


def test_schema_carries_the_model_constraints() -> None:
    policy = next(c for _, c in _crds() if c["spec"]["names"]["kind"] == "GovernancePolicy")
    spec = _schema(policy)["properties"]["spec"]["properties"]
    tokens_limit = spec["budgets"]["properties"]["tokens"]["properties"]["limit"]
    assert tokens_limit["type"] == "integer" and tokens_limit["minimum"] == 0
    default = spec["tools"]["properties"]["default"]
    assert default["enum"] == ["allow", "deny"] and default["default"] == "deny"
    warn_at = spec["budgets"]["properties"]["warnAt"]
    assert warn_at["maximum"] == 1 and warn_at["exclusiveMinimum"] is True
