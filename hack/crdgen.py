"""Generate the CustomResourceDefinitions in ``crds/`` from the pydantic spec models.

The models of :mod:`haltgate.governance.policy` are the one source of truth; this module
turns their JSON Schema into Kubernetes *structural* OpenAPI v3 schemas (no ``$ref``, no
``anyOf`` for optional fields, a ``type`` on every node, descriptions everywhere).
``python hack/crdgen.py crds/`` rewrites the files; a test fails when the
committed files differ from what the models generate.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from haltgate.governance.policy import API_GROUP, API_VERSION, BudgetPoolSpec, GovernancePolicySpec
from haltgate.governance.policy_base import FailureType

Schema = dict[str, Any]


def _resolve(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in {"title", "$defs"}:
            continue
        if key in {"properties", "patternProperties"}:
            out[key] = {k: _resolve(v, defs) for k, v in value.items()}
        else:
            out[key] = _resolve(value, defs)
    # Optional[X] comes as anyOf [X, null]: Kubernetes expresses optional by omission.
    if "anyOf" in out:
        branches = [b for b in out["anyOf"] if b.get("type") != "null"]
        if len(branches) == 1:
            merged = {**branches[0], **{k: v for k, v in out.items() if k != "anyOf"}}
            if merged.get("default", 0) is None:
                del merged["default"]
            out = merged
        elif all(b.get("type") in {"integer", "number"} for b in branches):
            out.pop("anyOf")
            out["type"] = "number"
    if out.get("default", 0) is None:
        del out["default"]
    # JSON Schema 2020-12 writes exclusive bounds as numbers; OpenAPI v3 as flags.
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(out.get(flag), int | float) and not isinstance(out[flag], bool):
            out[bound] = out[flag]
            out[flag] = True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if "type" not in out and "enum" not in out and "properties" not in out:
        # Any value (e.g. an argument constraint's `equals`).
        out = {k: v for k, v in out.items() if k in {"description"}}
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "object" and "properties" in out:
        out.pop("additionalProperties", None)  # unknown fields are rejected by validation
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _describe_children(node: Schema) -> None:
    """Give list items and map values a description derived from their field's."""
    for key in ("items", "additionalProperties"):
        child = node.get(key)
        if isinstance(child, dict):
            child.setdefault("description", f"One entry of: {node.get('description', '')}")
            _describe_children(child)
    for child in node.get("properties", {}).values():
        _describe_children(child)


def structural_schema(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: Schema = _resolve(raw, raw.get("$defs", {}))
    _describe_children(schema)
    return schema


_CONDITION: Schema = {
    "type": "object",
    "description": "A standard Kubernetes condition.",
    "required": ["type", "status"],
    "properties": {
        "type": {"type": "string", "description": "Condition type: Ready or Valid."},
        "status": {
            "type": "string",
            "enum": ["True", "False", "Unknown"],
            "description": "Whether the condition holds.",
        },
        "reason": {"type": "string", "description": "CamelCase reason for the last change."},
        "message": {"type": "string", "description": "Human-readable detail."},
        "lastTransitionTime": {
            "type": "string",
            "format": "date-time",
            "description": "When the status last changed.",
        },
        "observedGeneration": {
            "type": "integer",
            "minimum": 0,
            "description": "Generation the condition was computed for.",
        },
    },
}

_POLICY_STATUS: Schema = {
    "type": "object",
    "description": "Observed state, written by the haltgate operator.",
    "properties": {
        "observedGeneration": {
            "type": "integer",
            "minimum": 0,
            "description": "Last spec generation the operator processed.",
        },
        "ready": {"type": "boolean", "description": "Valid and delivered to sidecars."},
        "conditions": {
            "type": "array",
            "items": _CONDITION,
            "description": "Ready and Valid conditions.",
        },
        "matchedWorkloads": {
            "type": "integer",
            "minimum": 0,
            "description": "Number of workloads the selector matches.",
        },
        "enforcement": {
            "type": "string",
            "enum": ["enforce", "monitor"],
            "description": "How the delivered policy acts: enforce (refuses) or monitor "
            "(audits and counts would-refuse, refuses nothing).",
        },
        "haltedAgents": {
            "type": "integer",
            "minimum": 0,
            "description": "Number of agents currently halted (any failure "
            "type; pending halts not counted).",
        },
        "halts": {
            "type": "array",
            "description": "Currently halted agents.",
            "items": {
                "type": "object",
                "description": "One halted agent.",
                "properties": {
                    "pod": {"type": "string", "description": "Pod name."},
                    "failureType": {
                        "type": "string",
                        "enum": [f.value for f in FailureType],
                        "description": "Typed failure of the halt.",
                    },
                    "code": {"type": "string", "description": "Stable reason code."},
                    "message": {
                        "type": "string",
                        "description": "Why, as the sidecar or the halt annotation says.",
                    },
                    "source": {
                        "type": "string",
                        "description": "Who halted: sidecar (a "
                        "budget or guardrail), GovernancePolicy/NAME, Deployment/NAME, "
                        "BudgetPool/NAME (annotations), or admin API.",
                    },
                    "state": {
                        "type": "string",
                        "enum": ["Halted", "Pending"],
                        "description": "Halted: in force. Pending: an external halt "
                        "not delivered yet (no pod IP, or the call failed; retried).",
                    },
                    "workload": {
                        "type": "string",
                        "description": "The pod's workload, "
                        "e.g. Deployment/NAME (Events are posted there too).",
                    },
                    "since": {
                        "type": "string",
                        "format": "date-time",
                        "description": "When the halt happened.",
                    },
                },
            },
        },
    },
}

_POOL_STATUS: Schema = {
    "type": "object",
    "description": "Observed state, written by the haltgate operator.",
    "properties": {
        "observedGeneration": {
            "type": "integer",
            "minimum": 0,
            "description": "Last spec generation the operator processed.",
        },
        "state": {
            "type": "string",
            "enum": ["Active", "Halted"],
            "description": "Active, or Halted (system-level halt of every member).",
        },
        "reason": {"type": "string", "description": "Why the pool is halted."},
        "members": {
            "type": "integer",
            "minimum": 0,
            "description": "Number of policies drawing from the pool.",
        },
        "spentUSD": {"type": "number", "minimum": 0, "description": "Spend in this period."},
        "spentTokens": {
            "type": "integer",
            "minimum": 0,
            "description": "Tokens used in this period.",
        },
        "spentCalls": {
            "type": "integer",
            "minimum": 0,
            "description": "Calls made in this period.",
        },
        "conditions": {
            "type": "array",
            "items": _CONDITION,
            "description": "Ready and Valid conditions.",
        },
    },
}


def _crd(
    kind: str,
    plural: str,
    short: str,
    spec_model: type[BaseModel],
    status: Schema,
    columns: list[Schema],
    description: str,
) -> Schema:
    spec = structural_schema(spec_model)
    spec["description"] = spec_model.__doc__.strip() if spec_model.__doc__ else description
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{API_GROUP}",
            "labels": {"app.kubernetes.io/part-of": "haltgate"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["haltgate"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": "haltgate.dev/v1alpha1",
                                },
                                "kind": {"type": "string", "description": f"{kind}"},
                                # The apiserver rejects anything but `type` here (even a
                                # description): metadata's schema is implied.
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def governance_policy_crd() -> Schema:
    return _crd(
        "GovernancePolicy",
        "governancepolicies",
        "govpol",
        GovernancePolicySpec,
        _POLICY_STATUS,
        [
            {"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"},
            {"name": "Workloads", "type": "integer", "jsonPath": ".status.matchedWorkloads"},
            {"name": "Halted", "type": "integer", "jsonPath": ".status.haltedAgents"},
            {"name": "Enforcement", "type": "string", "jsonPath": ".status.enforcement"},
            {"name": "Pool", "type": "string", "jsonPath": ".spec.pool", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        "Budgets, tool rules, guardrails and OPA policy for the AI agents it selects.",
    )


def budget_pool_crd() -> Schema:
    return _crd(
        "BudgetPool",
        "budgetpools",
        "bpool",
        BudgetPoolSpec,
        _POOL_STATUS,
        [
            {"name": "State", "type": "string", "jsonPath": ".status.state"},
            {"name": "Members", "type": "integer", "jsonPath": ".status.members"},
            {"name": "Spent-USD", "type": "number", "jsonPath": ".status.spentUSD"},
            {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        "A budget shared by many agents, with cascade detection and a system-level halt.",
    )


def render() -> dict[str, str]:
    """File name -> YAML text of every CRD."""
    header = "# Generated by `python hack/crdgen.py crds/`. Do not edit.\n"
    return {
        "haltgate.dev_governancepolicies.yaml": header
        + yaml.safe_dump(governance_policy_crd(), sort_keys=False, width=100),
        "haltgate.dev_budgetpools.yaml": header
        + yaml.safe_dump(budget_pool_crd(), sort_keys=False, width=100),
    }


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "crds")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text, encoding="utf-8")
        print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
