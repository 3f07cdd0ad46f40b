"""``spec.flows``: rule matching, the per-run taint and its file, and validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from haltgate.governance.flow_taint import FlowTaint
from haltgate.governance.flows import FlowPolicy
from haltgate.governance.policy_base import RequestKind
from haltgate.governance.policy_rules import FlowRule
from haltgate.governance.request import CallView, ToolCall
from haltgate.governance.validation import validate_document


def http(
    method: str = "GET", path: str = "/", host: str = "example.com", upstream: str | None = None
) -> CallView:
    return CallView(RequestKind.HTTP, method, "https", host, 443, path, upstream=upstream)


def mcp_tool(name: str, server: str = "files", method: str = "tools/call") -> CallView:
    return CallView(
        RequestKind.MCP,
        "POST",
        "http",
        "mcp.local",
        80,
        "/mcp",
        upstream=server,
        tool_calls=(ToolCall(name, {}, server),) if method == "tools/call" else (),
        mcp_method=method,
        mcp_messages=((method, None, None),),
    )


LLM = CallView(
    RequestKind.LLM,
    "POST",
    "https",
    "api.openai.com",
    443,
    "/v1/chat/completions",
    upstream="llm",
    model="gpt-4o",
)


def rules(*docs: dict[str, Any]) -> FlowPolicy:
    return FlowPolicy([FlowRule.model_validate(d) for d in docs])


WEB = {
    "name": "web",
    "sources": [{"hosts": ["*.news.example"]}],
    "sinks": [{"kind": "http", "methods": ["POST"]}, {"mcpTools": ["send_*"]}],
}


@pytest.mark.parametrize(
    ("view", "hit"),
    [
        (http(host="daily.news.example"), True),
        (http(host="DAILY.NEWS.EXAMPLE"), True),  # hosts compare case-insensitively
        (http(host="news.example.evil"), False),
        (mcp_tool("read"), False),
        (LLM, False),  # an LLM answer is never a source
    ],
)
def test_source_matching(view: CallView, hit: bool) -> None:
    assert rules(WEB).sources_hit(view) == (["web"] if hit else [])


def test_any_tool_result_matches_http_and_mcp_results_only() -> None:
    policy = rules(
        {"name": "all", "sources": [{"anyToolResult": True}], "sinks": [{"hosts": ["*"]}]}
    )
    assert policy.sources_hit(http()) == ["all"]
    assert policy.sources_hit(mcp_tool("x")) == ["all"]
    assert policy.sources_hit(mcp_tool("", method="resources/read")) == ["all"]
    assert policy.sources_hit(mcp_tool("", method="tools/list")) == []
    assert policy.sources_hit(mcp_tool("", method="initialize")) == []
    assert policy.sources_hit(LLM) == []


def test_every_matcher_of_an_endpoint_must_match() -> None:
    policy = rules(
        {
            "name": "r",
            "sources": [{"mcpServers": ["web"], "mcpTools": ["fetch"]}],
            "sinks": [{"upstreams": ["mail"], "methods": ["POST"], "paths": ["/v1/*/send"]}],
        }
    )
    assert policy.sources_hit(mcp_tool("fetch", server="web")) == ["r"]
    assert policy.sources_hit(mcp_tool("fetch", server="files")) == []
    assert policy.sources_hit(mcp_tool("search", server="web")) == []
    taint = FlowTaint()
    taint.bind("run-1")
    taint.taint(["r"], "mcp web tool fetch")
    assert policy.check(http("POST", "/v1/me/send", upstream="mail"), taint)[0] is not None
    assert policy.check(http("POST", "/v1/me/x/send", upstream="mail"), taint)[0] is None
    assert policy.check(http("GET", "/v1/me/send", upstream="mail"), taint)[0] is None
    assert policy.check(http("POST", "/v1/me/send", upstream="web"), taint)[0] is None


def test_sinks_refused_only_after_the_source_and_only_for_that_rule() -> None:
    policy = rules(
        WEB,
        {
            "name": "other",
            "sources": [{"upstreams": ["files"]}],
            "sinks": [{"mcpTools": ["delete"]}],
        },
    )
    taint = FlowTaint()
    taint.bind("run-1")
    send = mcp_tool("send_mail", server="mail")
    assert policy.check(send, taint)[0] is None
    assert taint.taint(policy.sources_hit(http(host="a.news.example")), "GET a.news.example")
    refusal = policy.check(send, taint)[0]
    assert refusal is not None
    assert (refusal.rule, refusal.source, refusal.sink) == (
        "web",
        "GET a.news.example",
        "mcp mail tool send_mail",
    )
    assert policy.check(mcp_tool("delete"), taint)[0] is None  # 'other' is not tainted
    assert policy.check(mcp_tool("send_mail", method="tools/list"), taint)[0] is None


def test_taint_is_per_run_and_kept_in_its_file(tmp_path: Path) -> None:
    path = tmp_path / "flow-taint.json"
    taint = FlowTaint(path)
    taint.bind("run-1")
    assert taint.taint(["web"], "GET a.news.example")
    assert not taint.taint(["web"], "GET b.news.example")  # the first source is kept
    again = FlowTaint(path)
    again.bind("run-1")
    assert again.source_of("web") == "GET a.news.example"
    again.bind("run-2")  # an operator reset started a new run
    assert again.source_of("web") is None
    third = FlowTaint(path)
    third.bind("run-2")
    assert third.source_of("web") is None


@pytest.mark.parametrize("content", ["{oops", '{"version": 99}', "[]"])
def test_unreadable_taint_file_fails_closed_until_a_new_run(tmp_path: Path, content: str) -> None:
    path = tmp_path / "flow-taint.json"
    path.write_text(content)
    taint = FlowTaint(path)
    taint.bind("run-1")
    assert taint.source_of("any-rule") is not None
    taint.bind("run-2")
    assert taint.source_of("any-rule") is None


def doc(flows: Any) -> dict[str, Any]:
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "p"},
        "spec": {"selector": {"matchLabels": {"app": "a"}}, "flows": flows},
    }


def errors(flows: Any) -> dict[str, str]:
    return {i.path: i.message for i in validate_document(doc(flows)).errors}


SINK = [{"hosts": ["mail.example"]}]


@pytest.mark.parametrize(
    ("flows", "path", "message"),
    [
        ([{"name": "r", "sources": [], "sinks": SINK}], "spec.flows[0].sources", "at least 1"),
        (
            [{"name": "r", "sources": [{}], "sinks": SINK}],
            "spec.flows[0].sources[0]",
            "set at least one of",
        ),
        (
            [{"name": "r", "sources": [{"hosts": ["x"]}], "sinks": [{}]}],
            "spec.flows[0].sinks[0]",
            "set at least one of",
        ),
        (
            [{"name": "r", "sources": [{"hosts": ["x"]}], "sinks": [{"anyToolResult": True}]}],
            "spec.flows[0].sinks[0].anyToolResult",
            "only valid in sources",
        ),
        (
            [{"name": "r", "sources": [{"anyToolResult": True, "hosts": ["x"]}], "sinks": SINK}],
            "spec.flows[0].sources[0].anyToolResult",
            "remove hosts",
        ),
        (
            [{"name": "r", "sources": [{"kind": "mcp", "methods": ["GET"]}], "sinks": SINK}],
            "spec.flows[0].sources[0].methods",
            "only valid for http",
        ),
        (
            [{"name": "r", "sources": [{"kind": "http", "mcpTools": ["x"]}], "sinks": SINK}],
            "spec.flows[0].sources[0].mcpTools",
            "only valid for mcp",
        ),
        (
            [{"name": "r", "sources": [{"hosts": ["x"]}], "sinks": [{"methods": ["PO ST"]}]}],
            "spec.flows[0].sinks[0].methods[0]",
            "not an HTTP method",
        ),
        (
            [{"name": "r", "sources": [{"hosts": ["x"]}], "sinks": SINK, "action": "allow"}],
            "spec.flows[0].action",
            "must be one of",
        ),
        (
            [{"name": "r", "sources": [{"hosts": ["x"]}], "sinks": SINK, "scope": "forever"}],
            "spec.flows[0].scope",
            "must be one of",
        ),
        (
            [{"name": "r", "sources": [{"kind": "llm"}], "sinks": SINK}],
            "spec.flows[0].sources[0].kind",
            "must be one of",
        ),
        (
            [{"name": "r", "sources": [{"host": ["x"]}], "sinks": SINK}],
            "spec.flows[0].sources[0].host",
            "unknown field",
        ),
        (
            [
                {"name": "r", "sources": [{"hosts": ["x"]}], "sinks": SINK},
                {"name": "r", "sources": [{"hosts": ["y"]}], "sinks": SINK},
            ],
            "spec.flows[1].name",
            "duplicate flow rule name",
        ),
    ],
)
def test_validation_names_the_field(flows: Any, path: str, message: str) -> None:
    found = errors(flows)
    assert path in found, found
    assert message in found[path]


def test_valid_flows_pass() -> None:
    assert (
        errors(
            [
                WEB,
                {
                    "name": "all",
                    "sources": [{"anyToolResult": True}],
                    "sinks": [{"kind": "mcp", "mcpTools": ["send_*"]}],
                },
            ]
        )
        == {}
    )


def test_values_action_is_valid_and_any_tool_result_with_it_warns() -> None:
    rule = {**WEB, "action": "deny-untrusted-values"}
    assert errors([rule]) == {}
    wide = {**rule, "sources": [{"anyToolResult": True}]}
    result = validate_document(doc([wide]))
    assert result.ok
    warnings = {i.path: i.message for i in result.issues if i.warning}
    assert "deny-untrusted-values" in warnings["spec.flows[0].sources[0].anyToolResult"]
    assert not [i for i in validate_document(doc([rule])).issues if i.warning]


def test_approval_rule_holds_a_call_until_approved_once(tmp_path: Path) -> None:
    policy = rules(
        {
            "name": "ask",
            "sources": [{"hosts": ["*.news.example"]}],
            "sinks": [{"mcpTools": ["send_*"]}],
            "action": "approval",
        },
        {
            "name": "never",
            "sources": [{"hosts": ["*.news.example"]}],
            "sinks": [{"mcpTools": ["send_fax"]}],
        },
    )
    path = tmp_path / "flow-taint.json"
    taint = FlowTaint(path)
    taint.bind("run-1")
    taint.taint(policy.sources_hit(http(host="a.news.example")), "GET a.news.example")
    send = mcp_tool("send_mail", server="mail")
    first = policy.check(send, taint, lambda: "fp-1")[0]
    assert first is not None and first.code == "flow_approval_required"
    assert first.approval is not None and first.approval in first.message
    # The same call gets the same id; another call (other content) another one.
    assert policy.check(send, taint, lambda: "fp-1")[0] == first
    other = policy.check(send, taint, lambda: "fp-2")[0]
    assert other is not None and other.approval != first.approval
    # A deny rule wins over an approval rule.
    fax = policy.check(mcp_tool("send_fax"), taint, lambda: "fp-1")[0]
    assert fax is not None and fax.code == "flow_denied" and fax.approval is None
    assert not taint.approve("f" * 32)
    assert taint.approve(first.approval, "alice")
    restarted = FlowTaint(path)  # the approval (and who gave it) survives a restart
    restarted.bind("run-1")
    refusal, approved = policy.check(send, restarted, lambda: "fp-1")
    assert refusal is None and approved is not None
    assert approved.audit("approved") == {
        "stage": "flows",
        "rule": "ask",
        "source": "GET a.news.example",
        "sink": "mcp mail tool send_mail",
        "result": "approved",
        "approval": first.approval,
        "approved_by": "alice",
    }
    assert policy.check(send, restarted, lambda: "fp-1")[0] == first  # used up
    restarted.bind("run-2")
    assert not restarted.approve(first.approval)  # a reset voids pending approvals


def test_window_scope_closes_sinks_for_the_next_calls_only(tmp_path: Path) -> None:
    policy = rules(
        {
            "name": "w",
            "sources": [{"hosts": ["*.news.example"]}],
            "sinks": [{"mcpTools": ["send_*"]}],
            "scope": "calls",
            "windowCalls": 2,
        }
    )
    path = tmp_path / "flow-taint.json"
    taint = FlowTaint(path)
    taint.bind("run-1")
    send = mcp_tool("send_mail")
    taint.tick()  # call 1: the page
    taint.taint(policy.sources_hit(http(host="a.news.example")), "GET a.news.example")
    taint.tick()  # call 2
    assert policy.check(send, taint)[0] is not None
    taint.tick()  # call 3: the second call after the page
    assert policy.check(send, taint)[0] is not None
    assert FlowTaint(path).calls == 1  # a restart resumes from the taint (never shorter)
    taint.tick()  # call 4: the window has passed
    assert policy.check(send, taint)[0] is None
    taint.taint(["w"], "GET b.news.example")  # another untrusted answer restarts it
    taint.tick()
    assert policy.check(send, taint)[0] is not None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"scope": "calls"}, "required when scope is 'calls'"),
        ({"windowCalls": 3}, "only valid when scope is 'calls'"),
    ],
)
def test_window_validation(extra: dict[str, Any], message: str) -> None:
    found = errors([{"name": "r", "sources": [{"hosts": ["x"]}], "sinks": SINK, **extra}])
    assert found.get("spec.flows[0].windowCalls", "").startswith(message), found


def test_window_must_be_positive() -> None:
    found = errors(
        [
            {
                "name": "r",
                "sources": [{"hosts": ["x"]}],
                "sinks": SINK,
                "scope": "calls",
                "windowCalls": 0,
            }
        ]
    )
    assert found == {"spec.flows[0].windowCalls": "must be >= 1"}


def test_values_rule_with_a_window_checks_only_inside_it() -> None:
    policy = rules(
        {
            "name": "v",
            "sources": [{"hosts": ["*.news.example"]}],
            "sinks": [{"mcpTools": ["send_*"]}],
            "action": "deny-untrusted-values",
            "scope": "calls",
            "windowCalls": 1,
        }
    )
    taint = FlowTaint()
    taint.bind("run-1")
    taint.tick()
    taint.taint(["v"], "GET a.news.example")
    taint.record_values(["v"], {"attacker@evil.example"})
    send = mcp_tool("send_mail")
    carried = [("arguments.to", "attacker@evil.example")]
    taint.tick()
    refusal, _ = policy.check(send, taint, arguments=lambda: carried)
    assert refusal is not None and refusal.argument == "arguments.to"
    taint.tick()  # the window has passed: the rule no longer applies
    assert policy.check(send, taint, arguments=lambda: carried)[0] is None
