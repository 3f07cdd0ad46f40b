"""The injection template (``charts/haltgate/files/injection-template.yaml``): parsing,
checking every placeholder at start-up, and rendering it with a pod's values."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from haltgate.operator.injection import InjectionConfig

_PLACEHOLDER = re.compile(r"\{\{\s*\.([A-Za-z][A-Za-z0-9]*)\s*\}\}")
_SECTIONS = (
    "initContainer",
    "verifyContainer",
    "sidecar",
    "opaContainer",
    "shipperContainer",
    "sidecarEnvOPA",
    "sidecarEnvPool",
    "sidecarEnvPrices",
    "volumes",
    "agentVolumeMounts",
    "agentEnv",
    "agentEnvExplicit",
)


class TemplateError(ValueError):
    """The injection template is malformed or uses an unknown name."""


@dataclass(frozen=True, slots=True)
class InjectionTemplate:
    """The parsed injection template (``charts/haltgate/files/injection-template.yaml``)."""

    sections: Mapping[str, Any]
    source: str = "<template>"

    @classmethod
    def from_text(cls, text: str, source: str = "<template>") -> InjectionTemplate:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise TemplateError(f"{source}: invalid YAML: {e}") from e
        if not isinstance(doc, dict):
            raise TemplateError(f"{source}: must be a mapping of sections")
        missing = [s for s in _SECTIONS if s not in doc]
        extra = sorted(set(doc) - set(_SECTIONS))
        if missing or extra:
            raise TemplateError(f"{source}: missing sections {missing}, unknown sections {extra}")
        tpl = cls(doc, source)
        # Fail at start-up, not on the first pod: every placeholder must be known.
        tpl.render(InjectionConfig().template_values(policy="check", mode="transparent"))
        return tpl

    @classmethod
    def load(cls, path: str | Path) -> InjectionTemplate:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise TemplateError(f"{p}: cannot read: {e.strerror}") from e
        return cls.from_text(text, str(p))

    def render(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every section with its placeholders replaced (a fresh deep copy)."""

        def sub(node: Any, path: str) -> Any:
            if isinstance(node, dict):
                return {k: sub(v, f"{path}.{k}") for k, v in node.items()}
            if isinstance(node, list):
                return [sub(v, f"{path}[{i}]") for i, v in enumerate(node)]
            if not isinstance(node, str):
                return node
            whole = _PLACEHOLDER.fullmatch(node.strip())
            if whole:
                return copy.deepcopy(_value(whole.group(1), path))
            return _PLACEHOLDER.sub(lambda m: str(_value(m.group(1), path)), node)

        def _value(name: str, path: str) -> Any:
            if name not in values:
                raise TemplateError(f"{self.source}: {path}: unknown name .{name}")
            return values[name]

        rendered: dict[str, Any] = sub(dict(self.sections), "")
        return rendered


def default_template_path() -> Path:
    """The template shipped in the wheel, or the chart's copy in a source checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "injection-template.yaml"
    if packaged.is_file():
        return packaged
    # operator/haltgate/operator/ -> repository root
    return here.parents[2] / "charts" / "haltgate" / "files" / "injection-template.yaml"
