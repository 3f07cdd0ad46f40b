"""Policy validation: schema errors and semantic rules, each reported with its field path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from haltgate.governance.policy import BudgetPool, GovernancePolicy
from haltgate.governance.validation import (
    PolicyFileError,
    load_documents,
    load_policy_file,
    validate_document,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "docs" / "examples").glob("*.yaml"))
BROKEN = Path(__file__).parent / "testdata" / "policy-broken.yaml"


def policy(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """A minimal valid GovernancePolicy document with ``spec`` merged in."""
    doc: dict[str, Any] = {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "p", "namespace": "agents"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}},
    }
    doc["spec"].update(copy.deepcopy(spec or {}))
    return doc


def messages(doc: dict[str, Any]) -> dict[str, str]:
    """Field path -> message of every error (warnings excluded)."""
    return {i.path: i.message for i in validate_document(doc).errors}


# --------------------------------------------------------------------------- examples


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3, "docs/examples/ lost its example policies"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_valid(path: Path) -> None:
    docs = load_documents(path.read_text(), str(path))
    assert docs, f"{path} has no documents"
    for doc in docs:
        result = validate_document(doc)
        assert result.ok, [str(i) for i in result.errors]
        assert isinstance(result.document, GovernancePolicy | BudgetPool)


def test_minimal_policy_is_valid_and_gets_safe_defaults() -> None:
    result = validate_document(policy())
    assert result.ok and result.issues == ()
    assert isinstance(result.document, GovernancePolicy)
    spec = result.document.spec
    assert spec.tools.default == "deny"
    assert spec.guardrails.fail_mode == "closed"
    assert spec.audit.on_spool_full == "block"


# --------------------------------------------------------------------------- schema errors


def test_broken_file_reports_every_error_in_one_pass() -> None:
    """Schema errors and the semantic errors of the rest, together: nobody has to fix the
    first batch to see the second."""
    (doc,) = load_documents(BROKEN.read_text(), str(BROKEN))
    result = validate_document(doc)
    assert not result.ok and result.document is None
    found = {i.path: i.message for i in result.errors}
    assert found == {
        "spec.budgets.tokens.limit": "must be >= 0",
        "spec.budgets.costUSD.period": "must be one of 'run', 'hour' or 'day'",
        "spec.tools.default": "must be one of 'allow' or 'deny'",
        "spec.colour": "unknown field",
        # Semantic, found in the same pass on what the schema let through:
        "spec.tools.rules[0].arguments[0]": "set exactly one of equals, in, regex, maxLength",
        "spec.guardrails.promptInjection.action": "redact is not available for promptInjection",
    }
    assert doc["spec"]["budgets"]["tokens"] == {"limit": -5}  # the input is left as it was


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"budgets": {"calls": {}}}, "spec.budgets.calls.limit", "required field is missing"),
        ({"budgets": {"warnAt": 1.5}}, "spec.budgets.warnAt", "must be <= 1"),
        ({"budgets": {"riskScore": {"limit": 0}}}, "spec.budgets.riskScore.limit", "must be > 0"),
        (
            {"budgets": {"stagnation": {"window": 1}}},
            "spec.budgets.stagnation.window",
            "must be >= 2",
        ),
        (
            {"upstreams": [{"name": "Bad_Name", "url": "https://x", "kind": "llm"}]},
            "spec.upstreams[0].name",
            "must match",
        ),
        (
            {"upstreams": [{"name": "a", "url": "ftp://x", "kind": "llm"}]},
            "spec.upstreams[0].url",
            "must match",
        ),
        (
            {"tools": {"rules": [{"name": "r", "action": "permit"}]}},
            "spec.tools.rules[0].action",
            "must be one of 'allow' or 'deny'",
        ),
        (
            {"guardrails": {"pii": {"entities": ["shoe_size"]}}},
            "spec.guardrails.pii.entities[0]",
            "must be one of",
        ),
        ({"opa": {"rego": "package x", "timeoutMs": 0}}, "spec.opa.timeoutMs", "must be >= 1"),
        ({"pool": "Not A Name"}, "spec.pool", "must match"),
    ],
)
def test_schema_errors_name_the_field(spec: dict[str, Any], path: str, message: str) -> None:
    found = messages(policy(spec))
    assert path in found, found
    assert found[path].startswith(message)


def test_error_paths_use_the_wire_names() -> None:
    # Users write costUSD and warnAt; the path must say so, not cost_usd / warn_at.
    found = messages(policy({"budgets": {"costUSD": {"limit": -1}, "warnAt": 0}}))
    assert set(found) == {"spec.budgets.costUSD.limit", "spec.budgets.warnAt"}
    assert found["spec.budgets.costUSD.limit"].startswith("must be >= 0")


def test_kind_and_shape_are_checked() -> None:
    assert [str(i) for i in validate_document(["not", "a", "mapping"]).errors] == [
        "<document>: must be a mapping (a YAML object)"
    ]
    found = messages({**policy(), "kind": "Deployment"})
    assert found == {"kind": "must be one of GovernancePolicy, BudgetPool"}
    found = messages({**policy(), "apiVersion": "haltgate.dev/v2"})
    assert list(found) == ["apiVersion"]


def test_budget_pool_errors_have_paths() -> None:
    doc = {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "BudgetPool",
        "metadata": {"name": "pool"},
        "spec": {"leaseFraction": 2, "cascade": {"haltStorm": {"halts": 0, "windowSeconds": 5}}},
    }
    found = messages(doc)
    assert set(found) == {"spec.leaseFraction", "spec.cascade.haltStorm.halts"}
    assert found["spec.leaseFraction"].startswith("must be <= 1")
    assert found["spec.cascade.haltStorm.halts"] == "must be >= 1"


# --------------------------------------------------------------------------- semantic rules

_SEMANTIC = [
    pytest.param(
        {"budgets": {"tokens": {"period": "day"}}},
        "spec.budgets.tokens",
        "set at least one of limit, input, output",
        id="tokens-without-limit",
    ),
    pytest.param(
        {
            "upstreams": [
                {"name": "a", "url": "https://a", "kind": "llm"},
                {"name": "a", "url": "https://b", "kind": "mcp"},
            ]
        },
        "spec.upstreams[1].name",
        "duplicate upstream name 'a'",
        id="duplicate-upstream",
    ),
    pytest.param(
        {"upstreams": [{"name": "a", "url": "https://a", "kind": "mcp", "provider": "openai"}]},
        "spec.upstreams[0].provider",
        "only valid for upstreams of kind llm",
        id="provider-on-mcp",
    ),
    pytest.param(
        {"tools": {"rules": [{"name": "r", "action": "allow"}, {"name": "r", "action": "deny"}]}},
        "spec.tools.rules[1].name",
        "duplicate rule name 'r'",
        id="duplicate-rule",
    ),
    pytest.param(
        {"tools": {"rules": [{"name": "r", "action": "allow", "kind": "http", "mcpTools": ["x"]}]}},
        "spec.tools.rules[0].mcpTools",
        "only valid for rules of kind mcp",
        id="mcp-tools-on-http",
    ),
    pytest.param(
        {
            "tools": {
                "rules": [{"name": "r", "action": "allow", "kind": "mcp", "models": ["gpt-*"]}]
            }
        },
        "spec.tools.rules[0].models",
        "only valid for rules of kind llm",
        id="models-on-mcp",
    ),
    pytest.param(
        {"tools": {"rules": [{"name": "r", "action": "allow", "arguments": [{"path": "$.a"}]}]}},
        "spec.tools.rules[0].arguments[0]",
        "set exactly one of equals, in, regex, maxLength",
        id="constraint-none",
    ),
    pytest.param(
        {
            "tools": {
                "rules": [
                    {
                        "name": "r",
                        "action": "allow",
                        "arguments": [{"path": "$.a", "equals": 1, "maxLength": 3}],
                    }
                ]
            }
        },
        "spec.tools.rules[0].arguments[0]",
        "set exactly one of equals, in, regex, maxLength (found equals, maxLength)",
        id="constraint-two",
    ),
    pytest.param(
        {
            "tools": {
                "rules": [
                    {"name": "r", "action": "allow", "arguments": [{"path": "$.a", "regex": "("}]}
                ]
            }
        },
        "spec.tools.rules[0].arguments[0].regex",
        "invalid regular expression",
        id="constraint-bad-regex",
    ),
    pytest.param(
        {"guardrails": {"promptInjection": {"action": "redact"}}},
        "spec.guardrails.promptInjection.action",
        "redact is not available for promptInjection",
        id="redact-injection",
    ),
    pytest.param(
        {"guardrails": {"secrets": {"allowlist": ["ok", "[unclosed"]}}},
        "spec.guardrails.secrets.allowlist[1]",
        "invalid regular expression",
        id="allowlist-bad-regex",
    ),
    pytest.param(
        {"opa": {}}, "spec.opa", "set exactly one of rego, configMapRef", id="opa-neither"
    ),
    pytest.param(
        {"opa": {"rego": "package x", "configMapRef": {"name": "c", "key": "k"}}},
        "spec.opa",
        "set exactly one of rego, configMapRef",
        id="opa-both",
    ),
    pytest.param(
        {"pricing": {"unknownModel": "default"}},
        "spec.pricing.default",
        "required when unknownModel is 'default'",
        id="pricing-default",
    ),
    pytest.param(
        {"engine": {"type": "emocore"}},
        "spec.engine.profile",
        "required when type is 'emocore'",
        id="emocore-profile",
    ),
    pytest.param(
        {"selector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}},
        "spec.selector.matchExpressions[0].values",
        "must be empty for operator Exists",
        id="exists-with-values",
    ),
    pytest.param(
        {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
        "spec.selector.matchExpressions[0].values",
        "must not be empty for operator In",
        id="in-without-values",
    ),
]


@pytest.mark.parametrize(("spec", "path", "message"), _SEMANTIC)
def test_semantic_rule(spec: dict[str, Any], path: str, message: str) -> None:
    result = validate_document(policy(spec))
    assert not result.ok and result.document is None
    found = {i.path: i.message for i in result.errors}
    assert path in found, found
    assert found[path].startswith(message), found[path]


def test_semantic_errors_are_all_reported_together() -> None:
    spec = {
        "engine": {"type": "emocore"},
        "opa": {},
        "guardrails": {"promptInjection": {"action": "redact"}},
    }
    assert set(messages(policy(spec))) == {
        "spec.engine.profile",
        "spec.opa",
        "spec.guardrails.promptInjection.action",
    }


def test_fixing_a_semantic_error_makes_the_policy_valid() -> None:
    assert validate_document(policy({"engine": {"type": "emocore", "profile": "p"}})).ok
    assert validate_document(
        policy({"pricing": {"unknownModel": "default", "default": {"input": 1, "output": 2}}})
    ).ok


def test_empty_selector_is_a_warning_not_an_error() -> None:
    doc = policy()
    doc["spec"]["selector"] = {}
    result = validate_document(doc)
    assert result.ok
    assert [(i.path, i.warning) for i in result.issues] == [("spec.selector", True)]


# --------------------------------------------------------------------------- files


def test_load_policy_file_returns_the_model(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(policy({"budgets": {"calls": {"limit": 3}}})))
    loaded = load_policy_file(str(path))
    assert loaded.spec.budgets.calls is not None and loaded.spec.budgets.calls.limit == 3


def test_load_policy_file_raises_with_paths(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(policy({"budgets": {"calls": {"limit": -1}}})))
    with pytest.raises(PolicyFileError) as info:
        load_policy_file(str(path))
    assert [str(i) for i in info.value.issues] == ["spec.budgets.calls.limit: must be >= 0"]
    assert "spec.budgets.calls.limit" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected exactly one GovernancePolicy, found 0"),
        (
            yaml.safe_dump(policy()) + "---\n" + yaml.safe_dump(policy()),
            "expected exactly one GovernancePolicy, found 2",
        ),
        ("spec: [unclosed\n", "invalid YAML"),
    ],
    ids=["empty", "two-policies", "bad-yaml"],
)
def test_load_policy_file_rejects_bad_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PolicyFileError) as info:
        load_policy_file(str(path))
    assert expected in str(info.value)


def test_unreadable_file_is_a_policy_file_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="cannot read"):
        load_policy_file(str(tmp_path / "missing.yaml"))


def test_bad_yaml_error_names_the_line() -> None:
    with pytest.raises(PolicyFileError) as info:
        load_documents("a: 1\nb: [\n", "x.yaml")
    assert info.value.issues[0].path.startswith("line ")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9223372036854775808", "must be between -9223372036854775808 and 9223372036854775807"),
        (".inf", "must be a finite number"),
        ("1e400", "is beyond a 64-bit float"),
        ("'5'", "must be an integer, got str '5'"),
        ("true", "must be an integer, got bool True"),
    ],
)
def test_numeric_edges_refused_like_the_apiserver(value: str, message: str) -> None:
    text = (
        "apiVersion: haltgate.dev/v1alpha1\nkind: GovernancePolicy\nmetadata: {name: p}\n"
        f"spec:\n  selector: {{matchLabels: {{app: a}}}}\n  budgets:\n"
        f"    calls: {{limit: {value}}}\n    costUSD: {{limit: -1}}\n"
    )
    (doc,) = load_documents(text)
    found = {i.path: i.message for i in validate_document(doc).errors}
    assert message in found["spec.budgets.calls.limit"]
    assert found["spec.budgets.costUSD.limit"] == "must be >= 0"  # and the rest, same pass


def test_kubectl_numbers() -> None:
    (doc,) = load_documents("a: 1e3\nb: 1.0e400\nc: .inf\nd: 1_000\n")
    assert doc == {"a": 1000.0, "b": "1.0e400", "c": float("inf"), "d": 1000}
