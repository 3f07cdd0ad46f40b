"""Decision parsing and the input document: pure functions, no OPA needed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from haltgate.governance.opa import OPAPolicyError, resolve_rego
from haltgate.governance.opa_decision import (
    CODE_OPA_DENIED,
    CODE_OPA_MALFORMED,
    CODE_OPA_UNDEFINED,
    parse_decision,
)
from haltgate.governance.opa_input import INPUT_VERSION, build_input
from haltgate.governance.policy_base import FailureType
from haltgate.governance.policy_checks import OPA
from haltgate.governance.request import AgentIdentity, CallView, RequestKind, ToolCall
from haltgate.governance.tools import AuthzResult


class TestParseDecision:
    def test_bool(self) -> None:
        yes = parse_decision({"result": True})
        assert (yes.allow, yes.code, yes.failure_type) == (True, None, None)
        no = parse_decision({"result": False})
        assert (no.allow, no.code, no.failure_type) == (False, CODE_OPA_DENIED, FailureType.SAFETY)

    def test_undefined(self) -> None:
        d = parse_decision({})
        assert (d.allow, d.code) == (False, CODE_OPA_UNDEFINED)

    def test_object_allow(self) -> None:
        d = parse_decision(
            {
                "result": {
                    "allow": True,
                    "risk": 1.5,
                    "reason": "ok",
                    "headers": {"x-policy": "v1"},
                    "note": "ignored",
                },
                "decision_id": "abc",
            }
        )
        assert d.allow and d.code is None
        assert (d.risk, d.reason, dict(d.headers)) == (1.5, "ok", {"x-policy": "v1"})
        assert d.opa_decision_id == "abc"

    def test_object_deny_with_failure_type(self) -> None:
        d = parse_decision(
            {"result": {"allow": False, "reason": "too risky", "failure_type": "overrisk"}}
        )
        assert (d.allow, d.code, d.failure_type, d.reason) == (
            False,
            CODE_OPA_DENIED,
            FailureType.OVERRISK,
            "too risky",
        )

    def test_object_deny_defaults(self) -> None:
        d = parse_decision({"result": {"allow": False}})
        assert d.failure_type is FailureType.SAFETY and d.reason

    @pytest.mark.parametrize(
        "result",
        [
            "yes",
            1,
            None,
            [True],
            {},
            {"allow": "true"},
            {"allow": 1},
            {"allow": True, "reason": 3},
            {"allow": False, "failure_type": "BORED"},
            {"allow": True, "risk": -1},
            {"allow": True, "risk": True},
            {"allow": True, "risk": "1"},
            {"allow": True, "headers": ["x"]},
            {"allow": True, "headers": {"Host": "evil"}},
            {"allow": True, "headers": {"Transfer-Encoding": "chunked"}},
            {"allow": True, "headers": {"bad name": "x"}},
            {"allow": True, "headers": {"x-a": "line\r\nInjected: 1"}},
            {"allow": True, "headers": {"x-a": 1}},
            {"allow": True, "headers": {f"x-{i}": "v" for i in range(17)}},
        ],
    )
    def test_malformed_is_a_deny(self, result: Any) -> None:
        d = parse_decision({"result": result})
        assert (d.allow, d.code) == (False, CODE_OPA_MALFORMED)

    def test_not_an_object(self) -> None:
        assert parse_decision([1]).code == CODE_OPA_MALFORMED

    def test_reason_is_cut(self) -> None:
        d = parse_decision({"result": {"allow": False, "reason": "x" * 10_000}})
        assert len(d.reason) <= 512


@dataclass
class Finding:
    detector: str
    entity: str
    score: float


class TestInput:
    def test_schema(self) -> None:
        call = CallView(
            kind=RequestKind.MCP,
            method="POST",
            scheme="https",
            host="mcp.example",
            port=443,
            path="/mcp",
            upstream="github",
            mcp_method="tools/call",
            tool_calls=(ToolCall("create_issue", {"repo": "a/b"}, "github"),),
            agent=AgentIdentity("ns", "agent", "agent-0", "run-1"),
        )
        doc = build_input(
            call,
            authz=AuthzResult(True, "r", 1.0, None, "ok"),
            budget={"calls": {"used": 3, "reserved": 1, "limit": 10}},
            usage={"calls": 3, "cost_usd": 0.01},
            findings=[Finding("pii", "email", 0.9)],
        )
        assert doc["version"] == INPUT_VERSION
        assert doc["agent"] == {
            "namespace": "ns",
            "workload": "agent",
            "pod": "agent-0",
            "run_id": "run-1",
        }
        assert doc["request"]["kind"] == "mcp" and doc["request"]["host"] == "mcp.example"
        assert doc["tools"] == [
            {"name": "create_issue", "server": "github", "arguments": {"repo": "a/b"}}
        ]
        assert doc["authz"] == {"allowed": True, "rule": "r", "risk": 1.0, "code": None}
        assert doc["findings"] == [{"detector": "pii", "entity": "email", "score": 0.9}]
        assert orjson.loads(orjson.dumps(doc)) == doc  # plain JSON all the way down

    def test_unknown_kind(self) -> None:
        call = CallView(kind=None, method="GET", scheme="http", host="h", port=80, path="/")
        assert build_input(call)["request"]["kind"] is None

    def test_model_normalised_as_pricing_reads_it(self) -> None:
        call = CallView(
            kind=RequestKind.LLM,
            method="POST",
            scheme="https",
            host="h",
            port=443,
            path="/v1/chat/completions",
            model=" OpenAI/GPT-5-2025-08-07",
        )
        request = build_input(call)["request"]
        assert request["model"] == " OpenAI/GPT-5-2025-08-07"
        assert request["model_normalised"] == "gpt-5"


class TestResolveRego:
    def test_inline(self) -> None:
        assert resolve_rego(OPA(rego="package x")) == "package x"

    def test_config_map_file(self, tmp_path: Path) -> None:
        (tmp_path / "policy.rego").write_text("package y\n")
        settings = OPA.model_validate({"configMapRef": {"name": "cm", "key": "policy.rego"}})
        assert resolve_rego(settings, tmp_path) == "package y\n"

    def test_config_map_missing(self, tmp_path: Path) -> None:
        settings = OPA.model_validate({"configMapRef": {"name": "cm", "key": "nope.rego"}})
        with pytest.raises(OPAPolicyError, match="cm"):
            resolve_rego(settings, tmp_path)


def test_guardrail_findings_enter_the_input_without_matched_text() -> None:
    from haltgate.governance.guardrails.base import Finding as GuardFinding

    call = CallView(
        kind=RequestKind.LLM, method="POST", scheme="https", host="h", port=443, path="/"
    )
    finding = GuardFinding("pii", "email", 0.97, 10, 27, "block", 1.0)
    [entry] = build_input(call, findings=[finding])["findings"]
    assert entry["detector"] == "pii" and entry["type"] == "email"
    assert entry["action"] == "block"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:8181", "127.0.0.1:8181", "http://"])
def test_evaluator_rejects_bad_urls(url: str) -> None:
    from haltgate.governance.opa import OPAEvaluator

    with pytest.raises(ValueError, match="OPA url"):
        OPAEvaluator(OPA(rego="package x"), "package x", url=url)


def test_query_in_the_input_keeps_every_value() -> None:
    call = CallView(
        kind=RequestKind.HTTP,
        method="GET",
        scheme="https",
        host="h",
        port=443,
        path="/items",
        query=(("action", "list"), ("tag", "a"), ("action", "delete")),
    )
    assert build_input(call)["request"]["query"] == {"action": ["list", "delete"], "tag": ["a"]}
