"""JSON types as the kube-apiserver checks them, before the pydantic models see a value.

pydantic's lax mode turns ``"5"`` and ``true`` into integers, accepts 2**63 for an integer
and ``inf`` for a number; the apiserver refuses all of them (it stores int64 and JSON, which
has no Infinity or NaN). :func:`type_issues` walks a document along the model's JSON schema
and reports, with field paths, every value whose JSON type the apiserver would refuse, so
``haltgate policy validate`` and admission give the apiserver's verdict on numeric edges.

:class:`KubectlLoader` reads YAML numbers as ``kubectl`` does (Go's YAML): ``1e3`` is a
number, and a number too large for a float64 (``1e400``) stays a string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import yaml

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

Schema = Mapping[str, Any]
Loc = tuple[str | int, ...]
Report = Callable[[Loc, str], None]


@cache
def model_schema(model: Any) -> dict[str, Any]:
    """The model's JSON schema with wire (camelCase) names."""
    schema: dict[str, Any] = model.model_json_schema(by_alias=True)
    return schema


def _join(path: Loc, key: str | int) -> Loc:
    return (*path, key)


def _finite_issue(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return (
            f"must be a finite number, got {value} (JSON has no Infinity or NaN: the "
            f"apiserver cannot store it)"
        )
    return None


def _scalar_issue(kind: str, value: Any) -> str | None:
    """Why ``value`` is not of JSON schema type ``kind`` for the apiserver (None: it is)."""
    if value is None:
        return None  # "null" branches are handled by the caller; nullable is pydantic's
    if (why := _finite_issue(value)) is not None:
        return why
    if (
        kind in ("integer", "number")
        and isinstance(value, str)
        and _GO_FLOAT.match(value)
        and math.isinf(float(value))
    ):
        return (
            f"must be a number: {value} is beyond a 64-bit float (kubectl sends it as "
            f"the string {value!r}, which the apiserver refuses)"
        )
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be an integer, got {type(value).__name__} {value!r}"[:200]
        if isinstance(value, float) and not value.is_integer():
            return f"must be an integer, got {value}"
        if not INT64_MIN <= value <= INT64_MAX:
            return (
                f"must be between {INT64_MIN} and {INT64_MAX} (a 64-bit integer, as the "
                f"apiserver stores it), got {int(value)}"
            )
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number, got {type(value).__name__} {value!r}"[:200]
    elif kind == "string":
        if not isinstance(value, str):
            return f"must be a string, got {type(value).__name__} {value!r}"[:200]
    elif kind == "boolean":
        if not isinstance(value, bool):
            return f"must be true or false, got {type(value).__name__} {value!r}"[:200]
    elif kind == "object":
        if not isinstance(value, Mapping):
            return f"must be an object, got {type(value).__name__}"
    elif kind == "array":
        if not isinstance(value, list):
            return f"must be a list, got {type(value).__name__}"
    return None


def _collector(into: list[tuple[Loc, str]]) -> Report:
    def report(path: Loc, message: str) -> None:
        into.append((path, message))

    return report


def _walk(
    schema: Schema, defs: Mapping[str, Any], value: Any, path: Loc, report: Report, depth: int = 0
) -> None:
    if depth > 64:
        return
    if "$ref" in schema:
        schema = defs[str(schema["$ref"]).rsplit("/", 1)[-1]]
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        if value is None and any(b.get("type") == "null" for b in branches):
            return
        found: list[tuple[Loc, str]] = []
        for branch in (b for b in branches if b.get("type") != "null"):
            attempt: list[tuple[Loc, str]] = []
            _walk(branch, defs, value, path, _collector(attempt), depth + 1)
            if not attempt:
                return
            found = found or attempt
        for p, m in found:
            report(p, m)
        return
    kind = schema.get("type")
    if isinstance(kind, str) and (why := _scalar_issue(kind, value)) is not None:
        report(path, why)
        return
    if kind is None:  # any value: only what JSON cannot hold is refused
        _any(value, path, report, depth)
        return
    if isinstance(value, Mapping):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key)
            if sub is None and isinstance(extra, Mapping):
                sub = extra
            if sub is not None:
                _walk(sub, defs, item, _join(path, str(key)), report, depth + 1)
            else:
                _any(item, _join(path, str(key)), report, depth + 1)
    elif isinstance(value, list):
        items = schema.get("items")
        for i, item in enumerate(value):
            if isinstance(items, Mapping) and items:
                _walk(items, defs, item, _join(path, i), report, depth + 1)
            else:
                _any(item, _join(path, i), report, depth + 1)


def _any(value: Any, path: Loc, report: Report, depth: int) -> None:
    if depth > 64:
        return
    if (why := _finite_issue(value)) is not None:
        report(path, why)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _any(item, _join(path, str(key)), report, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _any(item, _join(path, i), report, depth + 1)


def type_issues(model: Any, doc: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """(location, message) for every value of ``doc`` whose JSON type the apiserver refuses,
    judged by ``model``'s schema; unknown fields are left to the model (pure)."""
    schema = model_schema(model)
    out: list[tuple[Loc, str]] = []
    _walk(schema, schema.get("$defs") or {}, doc, (), lambda p, m: out.append((p, m)))
    return out


# ----------------------------------------------------------------------------- YAML
_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INF_NAN = re.compile(r"^(?:[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


class KubectlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with numbers read as kubectl reads them: ``1e3`` is a float
    (PyYAML 1.1 wants a dot), and a number beyond float64 (``1e400``) stays a string."""


def _float(loader: yaml.SafeLoader, node: yaml.nodes.ScalarNode) -> Any:
    text = str(loader.construct_scalar(node))
    if _INF_NAN.match(text):
        return loader.construct_yaml_float(node)
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        return loader.construct_yaml_float(node)
    return value if math.isfinite(value) else text


KubectlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"), list("-+0123456789")
)
KubectlLoader.add_constructor("tag:yaml.org,2002:float", _float)
