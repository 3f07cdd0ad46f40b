"""`haltgate policy test`, and the validation hooks: Rego compile check, rule conflicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from haltgate.cli.main import main
from haltgate.governance.rego import RegoCompileCheck, check_rego, default_checks, eval_rego
from haltgate.governance.validation import validate_document

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

REGO = """\
package haltgate

default decision := {"allow": false, "reason": "tool rules said no"}

decision := {"allow": false, "reason": "personal data leaves the cluster",
             "failure_type": "SAFETY"} if {
    some f in input.findings
    f.detector == "pii"
} else := {"allow": true, "risk": 0.5} if input.authz.allowed
"""


def policy_doc(
    rego: str | None = REGO, rules: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "agent"}},
        "tools": {
            "rules": rules
            if rules is not None
            else [
                {"name": "llm", "action": "allow", "kind": "llm", "models": ["gpt-4o*"]},
                {
                    "name": "gh",
                    "action": "allow",
                    "kind": "mcp",
                    "mcpServers": ["github"],
                    "mcpTools": ["get_*"],
                },
                {"name": "no-delete", "action": "deny", "mcpTools": ["delete_*"]},
            ]
        },
    }
    if rego is not None:
        spec["opa"] = {"rego": rego}
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "demo"},
        "spec": spec,
    }


def write(tmp_path: Path, doc: dict[str, Any], request: dict[str, Any]) -> tuple[str, str]:
    pol, req = tmp_path / "policy.yaml", tmp_path / "request.json"
    pol.write_text(yaml.safe_dump(doc))
    req.write_text(json.dumps(request))
    return str(pol), str(req)


LLM_REQUEST = {
    "agent": {"namespace": "ns", "workload": "agent"},
    "request": {
        "kind": "llm",
        "method": "POST",
        "host": "api.openai.com",
        "path": "/v1/chat/completions",
        "model": "gpt-4o",
    },
}
MCP_DELETE = {
    "request": {"kind": "mcp", "host": "mcp.github.com", "path": "/mcp", "upstream": "github"},
    "tools": [{"name": "delete_repo", "server": "github", "arguments": {}}],
}


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["policy", "test", *args], catch_exceptions=False)


class TestPolicyTestCommand:
    def test_http_rule_reads_the_query(self, tmp_path: Path) -> None:
        rule = {
            "name": "no-delete-action",
            "action": "deny",
            "kind": "http",
            "arguments": [{"path": "$.query.action", "equals": "delete"}],
        }
        request = {"request": {"kind": "http", "method": "GET", "host": "api", "path": "/x"}}
        doc = policy_doc(rego=None, rules=[rule])
        doc["spec"]["tools"]["default"] = "allow"
        pol, req = write(
            tmp_path,
            doc,
            {**request, "request": {**request["request"], "query": {"action": ["delete"]}}},
        )
        r = run(pol, "--input", req, "--expect", "deny")
        assert r.exit_code == 0, r.output
        assert "no-delete-action" in r.output
        pol, req = write(
            tmp_path,
            doc,
            {**request, "request": {**request["request"], "query": {"action": "delete"}}},
        )
        r = CliRunner().invoke(main, ["policy", "test", pol, "--input", req])
        assert r.exit_code == 2 and "request.query" in r.output

    def test_allow_through_both_stages(self, tmp_path: Path, opa_binary: Path) -> None:
        pol, req = write(tmp_path, policy_doc(), LLM_REQUEST)
        r = run(pol, "--input", req, "--opa", str(opa_binary), "--expect", "allow")
        assert r.exit_code == 0, r.output
        assert "tool rules: ALLOW by rule 'llm'" in r.output
        assert "opa:        ALLOW data.haltgate.decision risk=0.5" in r.output
        assert r.output.rstrip().endswith("decision:   ALLOW")

    def test_tool_deny_explained(self, tmp_path: Path, opa_binary: Path) -> None:
        pol, req = write(tmp_path, policy_doc(), MCP_DELETE)
        r = run(pol, "--input", req, "--opa", str(opa_binary), "--json")
        assert r.exit_code == 0, r.output
        out = json.loads(r.output)
        assert out["tools"]["rule"] == "no-delete" and out["tools"]["code"] == "tool_denied"
        assert out["opa"]["allow"] is False  # the Rego sees input.authz
        assert out["decision"] == {"allowed": False, "code": "tool_denied"}

    def test_opa_deny_with_findings(self, tmp_path: Path, opa_binary: Path) -> None:
        request = {**LLM_REQUEST, "findings": [{"detector": "pii", "entity": "email"}]}
        pol, req = write(tmp_path, policy_doc(), request)
        r = run(pol, "--input", req, "--opa", str(opa_binary), "--expect", "allow")
        assert r.exit_code == 1
        assert "[opa_denied] SAFETY" in r.output
        assert "personal data leaves the cluster" in r.output
        assert "decision:   DENY [opa_denied]" in r.output

    def test_undefined_and_eval_errors(self, tmp_path: Path, opa_binary: Path) -> None:
        pol, req = write(tmp_path, policy_doc("package haltgate\n\nother := 1\n"), LLM_REQUEST)
        r = run(pol, "--input", req, "--opa", str(opa_binary), "--json")
        assert json.loads(r.output)["opa"]["code"] == "opa_undefined"
        conflict = "package haltgate\n\ndecision := true\n\ndecision := false if input\n"
        pol, req = write(tmp_path, policy_doc(conflict), LLM_REQUEST)
        r = run(pol, "--input", req, "--opa", str(opa_binary), "--json")
        assert json.loads(r.output)["opa"]["code"] == "opa_error"

    def test_without_opa_section_only_tool_rules(self, tmp_path: Path) -> None:
        pol, req = write(tmp_path, policy_doc(None), LLM_REQUEST)
        r = run(pol, "--input", req, "--expect", "deny")
        assert r.exit_code == 1
        assert "opa:        (no spec.opa)" in r.output

    def test_configmap_policy_needs_rego_file(self, tmp_path: Path, opa_binary: Path) -> None:
        doc = policy_doc(None)
        doc["spec"]["opa"] = {"configMapRef": {"name": "cm", "key": "p.rego"}}
        pol, req = write(tmp_path, doc, LLM_REQUEST)
        assert run(pol, "--input", req, "--opa", str(opa_binary)).exit_code == 2
        (tmp_path / "p.rego").write_text(REGO)
        r = run(
            pol,
            "--input",
            req,
            "--opa",
            str(opa_binary),
            "--rego",
            str(tmp_path / "p.rego"),
            "--expect",
            "allow",
        )
        assert r.exit_code == 0, r.output

    def test_invalid_policy_exits_1(self, tmp_path: Path) -> None:
        doc = policy_doc(None)
        doc["spec"]["tools"]["rules"][0]["action"] = "maybe"
        pol, req = write(tmp_path, doc, LLM_REQUEST)
        r = run(pol, "--input", req)
        assert r.exit_code == 1
        assert "spec.tools.rules[0].action" in r.output

    def test_bad_input_is_usage_error(self, tmp_path: Path) -> None:
        pol, req = write(tmp_path, policy_doc(None), {"request": {"kind": "smtp"}})
        assert run(pol, "--input", req).exit_code == 2


class TestValidationHooks:
    def test_rego_compile_error_with_line_and_column(self, opa_binary: Path) -> None:
        bad = 'package haltgate\n\ndecision := {"allow": true} if {\n  input.x ==\n}\n'
        result = validate_document(
            policy_doc(bad), extra_checks=[RegoCompileCheck(str(opa_binary))]
        )
        assert not result.ok
        [issue] = result.errors
        assert issue.path == "spec.opa.rego"
        assert issue.message.startswith("line 5, column 1:")

    def test_rego_that_compiles_passes(self, opa_binary: Path) -> None:
        result = validate_document(policy_doc(), extra_checks=default_checks(str(opa_binary)))
        assert result.ok, result.issues

    def test_unsafe_variable_is_a_compile_error(self, opa_binary: Path) -> None:
        errors = check_rego("package x\n\nallow if y > 1\n", opa=str(opa_binary))
        assert errors and errors[0].row == 3 and "unsafe" in errors[0].message

    def test_conflicting_rules_rejected_without_opa(self) -> None:
        rules = [
            {"name": "a", "action": "allow", "mcpTools": ["x"]},
            {"name": "d", "action": "deny", "mcpTools": ["x"]},
        ]
        result = validate_document(policy_doc(None, rules))
        assert [(i.path, "never allow" in i.message) for i in result.errors] == [
            ("spec.tools.rules[0]", True)
        ]

    def test_cli_validate_reports_rego_errors(
        self, tmp_path: Path, opa_binary: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HALTGATE_OPA", str(opa_binary))
        pol, _ = write(tmp_path, policy_doc("package haltgate\n\ndecision :=\n"), {})
        r = CliRunner().invoke(main, ["policy", "validate", pol])
        assert r.exit_code == 1
        assert "spec.opa.rego: line" in r.output

    def test_rego_without_the_decision_rule_is_refused(
        self, tmp_path: Path, opa_binary: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`policy test` answers opa_undefined for it: validate must refuse it up front."""
        result = validate_document(
            policy_doc("package haltgate\n\nother := 1\n"),
            extra_checks=[RegoCompileCheck(str(opa_binary))],
        )
        [issue] = result.errors
        assert issue.path == "spec.opa.decisionPath"
        assert "no rule at data.haltgate.decision" in issue.message
        assert "data.haltgate.other" in issue.message
        wrong_package = policy_doc("package authz\n\ndecision := true\n")
        assert not validate_document(
            wrong_package, extra_checks=[RegoCompileCheck(str(opa_binary))]
        ).ok
        # A rule under the path, or a path under a rule, is a decision.
        for rego, path in (
            ("package haltgate\n\ndecision.allow := true\n", None),
            ("package haltgate.decision\n\nallow := true\n", None),
            ('package haltgate\n\nd := {"allow": true}\n', "haltgate/d/x"),
        ):
            doc = policy_doc(rego)
            if path:
                doc["spec"]["opa"]["decisionPath"] = path
            result = validate_document(doc, extra_checks=[RegoCompileCheck(str(opa_binary))])
            assert result.ok, (rego, result.issues)
        monkeypatch.setenv("HALTGATE_OPA", str(opa_binary))
        pol, _ = write(tmp_path, policy_doc("package haltgate\n\nother := 1\n"), {})
        r = CliRunner().invoke(main, ["policy", "validate", pol])
        assert r.exit_code == 1 and "spec.opa.decisionPath: no rule" in r.output

    def test_eval_rego_shapes(self, opa_binary: Path) -> None:
        opa = str(opa_binary)
        assert eval_rego("package p\n\nv := input.a\n", "p/v", {"a": 2}, opa=opa) == {"result": 2}
        assert eval_rego("package p\n\nv := input.a\n", "p/v", {}, opa=opa) == {}


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(example: Path, opa_binary: Path) -> None:
    for doc in yaml.safe_load_all(example.read_text()):
        if isinstance(doc, dict) and doc.get("kind") == "GovernancePolicy":
            result = validate_document(doc, extra_checks=default_checks(str(opa_binary)))
            assert result.ok, [str(i) for i in result.issues]


@pytest.mark.parametrize(
    ("policy", "request_file", "expected"),
    [
        ("policy-gdpr.yaml", "gdpr-pii-to-eu-llm.json", (True, None)),
        ("policy-gdpr.yaml", "gdpr-pii-to-translation.json", (False, "opa_denied")),
        ("policy-hipaa.yaml", "hipaa-one-patient.json", (True, None)),
        ("policy-hipaa.yaml", "hipaa-bulk-export.json", (False, "tool_denied")),
        (
            "policy-soc2.yaml",
            "soc2-deploy-without-ticket.json",
            (False, "argument_constraint_failed"),
        ),
        ("policy-soc2.yaml", "soc2-deploy-risk-exhausted.json", (False, "opa_denied")),
    ],
)
def test_example_policies_decide_as_documented(
    policy: str, request_file: str, expected: tuple[bool, str | None], opa_binary: Path
) -> None:
    r = run(
        str(EXAMPLES / policy),
        "--input",
        str(EXAMPLES / "requests" / request_file),
        "--opa",
        str(opa_binary),
        "--json",
    )
    assert r.exit_code == 0, r.output
    decision = json.loads(r.output)["decision"]
    assert (decision["allowed"], decision["code"]) == expected


def test_without_opa_binary_rego_is_a_warning_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HALTGATE_BIN_CACHE", str(tmp_path))
    monkeypatch.delenv("HALTGATE_OPA", raising=False)
    result = validate_document(
        policy_doc("package haltgate\n\ndecision :=\n"), extra_checks=default_checks()
    )
    assert result.ok
    assert [i.path for i in result.issues if i.warning] == ["spec.opa.rego"]
