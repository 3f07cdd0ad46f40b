"""ToolAuthorizer: rule matching, deny wins, default deny, argument constraints, tools/list."""

from __future__ import annotations

from typing import Any

import pytest

from haltgate.governance.glob_match import compile_glob
from haltgate.governance.policy_rules import Tools
from haltgate.governance.request import CallView, RequestKind, ToolCall
from haltgate.governance.tool_arguments import compile_json_path, lookup_json_path
from haltgate.governance.tools import (
    CODE_ARGUMENT_CONSTRAINT_FAILED,
    CODE_TOOL_DENIED,
    CODE_TOOL_NOT_ALLOWED,
    PLAN_CACHE_SIZE,
    ToolAuthorizer,
    find_conflicts,
)


def authorizer(rules: list[dict[str, Any]], default: str = "deny") -> ToolAuthorizer:
    return ToolAuthorizer(Tools.model_validate({"default": default, "rules": rules}))


def llm(
    model: str = "gpt-4o",
    host: str = "api.openai.com",
    path: str = "/v1/chat/completions",
    method: str = "POST",
) -> CallView:
    return CallView(
        kind=RequestKind.LLM,
        method=method,
        scheme="https",
        host=host,
        port=443,
        path=path,
        model=model,
    )


def http(method: str = "GET", host: str = "api.internal", path: str = "/api/v1/items") -> CallView:
    return CallView(
        kind=RequestKind.HTTP, method=method, scheme="http", host=host, port=80, path=path
    )


def mcp(
    *tools: tuple[str, Any],
    server: str = "github",
    mcp_method: str | None = None,
    host: str = "mcp.example",
) -> CallView:
    calls = tuple(ToolCall(name, args, server) for name, args in tools)
    return CallView(
        kind=RequestKind.MCP,
        method="POST",
        scheme="https",
        host=host,
        port=443,
        path="/mcp",
        upstream=server,
        tool_calls=calls,
        mcp_method=mcp_method or ("tools/call" if calls else "initialize"),
    )


GITHUB = [
    {
        "name": "read",
        "action": "allow",
        "mcpServers": ["github"],
        "mcpTools": ["get_*", "list_*"],
        "risk": 0.5,
    },
    {
        "name": "issue",
        "action": "allow",
        "mcpServers": ["github"],
        "mcpTools": ["create_issue"],
        "arguments": [{"path": "$.repo", "in": ["acme/app"]}, {"path": "$.title", "maxLength": 10}],
        "risk": 2,
    },
    {"name": "no-delete", "action": "deny", "mcpTools": ["delete_*"], "risk": 5},
]


class TestDefaults:
    def test_no_rules_default_deny(self) -> None:
        r = authorizer([]).authorize(llm())
        assert (r.allowed, r.code, r.rule) == (False, CODE_TOOL_NOT_ALLOWED, None)

    def test_no_rules_default_allow(self) -> None:
        r = authorizer([], default="allow").authorize(llm())
        assert (r.allowed, r.code, r.rule, r.risk) == (True, None, None, 0.0)

    def test_unknown_kind_never_matches_a_kind_rule(self) -> None:
        a = authorizer([{"name": "l", "action": "allow", "kind": "llm"}])
        unknown = CallView(kind=None, method="GET", scheme="http", host="x", port=80, path="/")
        assert not a.authorize(unknown).allowed


class TestTargetMatchers:
    def test_llm_model_and_host_globs(self) -> None:
        a = authorizer(
            [
                {
                    "name": "oa",
                    "action": "allow",
                    "kind": "llm",
                    "hosts": ["*.openai.com"],
                    "models": ["gpt-4o*"],
                    "risk": 0.25,
                }
            ]
        )
        ok = a.authorize(llm("gpt-4o-mini", host="API.OpenAI.com"))
        assert (ok.allowed, ok.rule, ok.risk) == (True, "oa", 0.25)
        assert not a.authorize(llm("o1-preview")).allowed
        assert not a.authorize(llm("gpt-4o", host="openai.com.evil.net")).allowed

    def test_llm_call_without_model_does_not_match_model_rule(self) -> None:
        a = authorizer([{"name": "oa", "action": "allow", "models": ["*"]}])
        assert not a.authorize(llm(model=None)).allowed  # type: ignore[arg-type]

    def test_path_glob_single_and_double_star(self) -> None:
        a = authorizer([{"name": "one", "action": "allow", "kind": "http", "paths": ["/api/*"]}])
        assert a.authorize(http(path="/api/items")).allowed
        assert not a.authorize(http(path="/api/v1/items")).allowed
        b = authorizer([{"name": "any", "action": "allow", "kind": "http", "paths": ["/api/**"]}])
        assert b.authorize(http(path="/api/v1/items")).allowed
        assert not b.authorize(http(path="/admin/api/x")).allowed

    def test_query_string_ignored_for_paths(self) -> None:
        a = authorizer([{"name": "one", "action": "allow", "paths": ["/api/items"]}])
        assert a.authorize(http(path="/api/items?x=/etc")).allowed

    def test_methods_case_insensitive(self) -> None:
        a = authorizer([{"name": "get", "action": "allow", "kind": "http", "methods": ["get"]}])
        assert a.authorize(http("GET")).allowed
        assert not a.authorize(http("DELETE")).allowed

    def test_glob_metacharacters_are_literal(self) -> None:
        a = authorizer([{"name": "x", "action": "allow", "hosts": ["a.b"]}])
        assert not a.authorize(http(host="aXb")).allowed

    def test_tool_rule_does_not_allow_llm_calls(self) -> None:
        # A rule naming MCP tools speaks about MCP only, even without `kind`.
        a = authorizer([{"name": "t", "action": "allow", "mcpTools": ["*"]}])
        assert not a.authorize(llm()).allowed
        assert a.authorize(mcp(("anything", {}))).allowed


class TestDenyWins:
    def test_deny_beats_allow_regardless_of_order(self) -> None:
        rules: list[dict[str, Any]] = [
            {"name": "all", "action": "allow"},
            {"name": "no-o1", "action": "deny", "kind": "llm", "models": ["o1*"], "risk": 3},
        ]
        for order in (rules, rules[::-1]):
            r = authorizer(order).authorize(llm("o1-mini"))
            assert (r.allowed, r.rule, r.code, r.risk) == (False, "no-o1", CODE_TOOL_DENIED, 3)

    def test_denied_tool_in_batch_denies_the_batch(self) -> None:
        a = authorizer(GITHUB)
        r = a.authorize(mcp(("get_file", {}), ("delete_repo", {})))
        assert (r.allowed, r.rule, r.code) == (False, "no-delete", CODE_TOOL_DENIED)
        assert "delete_repo" in r.message

    def test_batch_risk_is_summed(self) -> None:
        a = authorizer(GITHUB)
        r = a.authorize(
            mcp(
                ("get_file", {}),
                ("list_issues", {}),
                ("create_issue", {"repo": "acme/app", "title": "t"}),
            )
        )
        assert r.allowed and r.risk == pytest.approx(3.0)
        assert r.rule == "read,issue"

    def test_tool_deny_rule_does_not_deny_the_server_session(self) -> None:
        a = authorizer(GITHUB)
        for method in ("initialize", "tools/list", "notifications/initialized"):
            r = a.authorize(mcp(mcp_method=method))
            assert r.allowed, method
            assert r.risk == 0.0

    def test_server_deny_rule_denies_session(self) -> None:
        a = authorizer(
            [*GITHUB, {"name": "no-gh", "action": "deny", "kind": "mcp", "mcpServers": ["github"]}]
        )
        assert a.authorize(mcp(mcp_method="initialize")).code == CODE_TOOL_DENIED

    def test_session_to_unlisted_server_denied(self) -> None:
        r = authorizer(GITHUB).authorize(mcp(server="slack", host="slack.example"))
        assert r.code == CODE_TOOL_NOT_ALLOWED


class TestArgumentConstraints:
    def test_constraints_all_hold(self) -> None:
        r = authorizer(GITHUB).authorize(mcp(("create_issue", {"repo": "acme/app", "title": "hi"})))
        assert (r.allowed, r.rule, r.risk) == (True, "issue", 2.0)

    @pytest.mark.parametrize(
        "args",
        [
            {"repo": "evil/app", "title": "hi"},
            {"repo": "acme/app", "title": "much too long title"},
            {"title": "hi"},  # missing path fails
            {"repo": ["acme/app"], "title": "hi"},  # wrong type
            "not an object",
            None,
        ],
    )
    def test_constraint_failure(self, args: Any) -> None:
        r = authorizer(GITHUB).authorize(mcp(("create_issue", args)))
        assert (r.allowed, r.code, r.rule) == (False, CODE_ARGUMENT_CONSTRAINT_FAILED, "issue")

    def test_regex_is_unanchored_search(self) -> None:
        a = authorizer(
            [
                {"name": "sql", "action": "allow", "mcpTools": ["sql"]},
                {
                    "name": "no-drop",
                    "action": "deny",
                    "mcpTools": ["sql"],
                    "arguments": [{"path": "$.q", "regex": "(?i)\\bdrop\\b"}],
                },
            ]
        )
        assert a.authorize(mcp(("sql", {"q": "select 1"}))).allowed
        r = a.authorize(mcp(("sql", {"q": "SELECT 1; DROP TABLE x"})))
        assert (r.allowed, r.rule) == (False, "no-drop")
        # The deny rule's path is absent: the deny rule does not match.
        assert a.authorize(mcp(("sql", {"other": "drop"}))).allowed

    def test_equals_is_json_typed(self) -> None:
        a = authorizer(
            [
                {
                    "name": "e",
                    "action": "allow",
                    "mcpTools": ["t"],
                    "arguments": [{"path": "$.flag", "equals": True}],
                }
            ]
        )
        assert a.authorize(mcp(("t", {"flag": True}))).allowed
        assert not a.authorize(mcp(("t", {"flag": 1}))).allowed
        assert not a.authorize(mcp(("t", {"flag": "true"}))).allowed

    def test_in_with_numbers(self) -> None:
        a = authorizer(
            [
                {
                    "name": "n",
                    "action": "allow",
                    "mcpTools": ["t"],
                    "arguments": [{"path": "$.n", "in": [1, 2]}],
                }
            ]
        )
        assert a.authorize(mcp(("t", {"n": 2.0}))).allowed
        assert not a.authorize(mcp(("t", {"n": True}))).allowed

    def test_nested_path_and_index(self) -> None:
        a = authorizer(
            [
                {
                    "name": "f",
                    "action": "allow",
                    "mcpTools": ["read"],
                    "arguments": [{"path": "$.files[0].path", "regex": "^/workspace/"}],
                }
            ]
        )
        assert a.authorize(mcp(("read", {"files": [{"path": "/workspace/a"}]}))).allowed
        assert not a.authorize(mcp(("read", {"files": [{"path": "/etc/passwd"}]}))).allowed
        assert not a.authorize(mcp(("read", {"files": []}))).allowed
        assert not a.authorize(mcp(("read", {"files": {"0": {"path": "/workspace/a"}}}))).allowed

    def test_max_length_counts_list_items(self) -> None:
        a = authorizer(
            [
                {
                    "name": "m",
                    "action": "allow",
                    "mcpTools": ["t"],
                    "arguments": [{"path": "$.ids", "maxLength": 2}],
                }
            ]
        )
        assert a.authorize(mcp(("t", {"ids": [1, 2]}))).allowed
        assert not a.authorize(mcp(("t", {"ids": [1, 2, 3]}))).allowed

    def test_unconditional_allow_admits_when_constrained_rule_fails(self) -> None:
        a = authorizer(
            [
                {"name": "any-t", "action": "allow", "mcpTools": ["t"], "risk": 1},
                {
                    "name": "t-risky",
                    "action": "allow",
                    "mcpTools": ["t"],
                    "risk": 4,
                    "arguments": [{"path": "$.mode", "equals": "write"}],
                },
            ]
        )
        assert a.authorize(mcp(("t", {"mode": "read"}))).rule == "any-t"
        r = a.authorize(mcp(("t", {"mode": "write"})))
        assert (r.rule, r.risk) == ("t-risky", 4.0)  # the highest matching weight counts

    def test_decision_does_not_stick_to_the_first_arguments_seen(self) -> None:
        # The plan cache memoizes matching, never argument outcomes.
        a = authorizer(GITHUB)
        good = mcp(("create_issue", {"repo": "acme/app", "title": "a"}))
        bad = mcp(("create_issue", {"repo": "evil/app", "title": "a"}))
        for _ in range(3):
            assert a.authorize(good).allowed
            assert not a.authorize(bad).allowed

    def test_plan_cache_is_bounded(self) -> None:
        a = authorizer([{"name": "h", "action": "allow", "kind": "http", "paths": ["/ok/*"]}])
        for i in range(PLAN_CACHE_SIZE + 10):
            assert a.authorize(http(path=f"/ok/{i}")).allowed
        assert len(a._plans) <= PLAN_CACHE_SIZE
        assert not a.authorize(http(path="/nope")).allowed


class TestToolsList:
    TOOLS = [
        {"name": n, "description": "d"}
        for n in ("get_file", "list_repos", "create_issue", "delete_repo", "push")
    ]

    def test_filter_by_rules(self) -> None:
        kept = authorizer(GITHUB).filter_tools_list("github", self.TOOLS)
        assert [t["name"] for t in kept] == ["get_file", "list_repos", "create_issue"]
        assert kept[0] == {"name": "get_file", "description": "d"}

    def test_other_server_gets_nothing(self) -> None:
        assert authorizer(GITHUB).filter_tools_list("slack", self.TOOLS) == []

    def test_default_allow_keeps_all_but_denied(self) -> None:
        kept = authorizer(GITHUB[2:], default="allow").filter_tools_list("x", self.TOOLS)
        assert "delete_repo" not in [t["name"] for t in kept]
        assert len(kept) == 4

    def test_constrained_deny_does_not_hide_tool(self) -> None:
        a = authorizer(
            [
                {"name": "a", "action": "allow", "mcpTools": ["*"]},
                {
                    "name": "d",
                    "action": "deny",
                    "mcpTools": ["sql"],
                    "arguments": [{"path": "$.q", "regex": "drop"}],
                },
            ]
        )
        assert a.filter_tools_list("s", [{"name": "sql"}]) == [{"name": "sql"}]

    def test_with_call_host_matchers_apply(self) -> None:
        a = authorizer(
            [
                {
                    "name": "a",
                    "action": "allow",
                    "kind": "mcp",
                    "hosts": ["mcp.good"],
                    "mcpTools": ["*"],
                }
            ]
        )
        listing = mcp(mcp_method="tools/list", host="mcp.good")
        assert a.filter_tools_list("github", [{"name": "x"}], listing) == [{"name": "x"}]
        other = mcp(mcp_method="tools/list", host="mcp.bad")
        assert a.filter_tools_list("github", [{"name": "x"}], other) == []

    def test_malformed_entries_dropped(self) -> None:
        a = authorizer([], default="allow")
        entries: list[Any] = [{"name": 3}, {"x": 1}, "str", {"name": "ok"}]
        assert a.filter_tools_list("s", entries) == [{"name": "ok"}]


class TestCompilers:
    def test_glob_none_when_empty(self) -> None:
        assert compile_glob([]) is None

    def test_json_path(self) -> None:
        assert compile_json_path("$") == ()
        assert compile_json_path("$.a.b-c[3].d_e") == ("a", "b-c", 3, "d_e")
        with pytest.raises(ValueError):
            compile_json_path("$..a")
        with pytest.raises(ValueError):
            compile_json_path("a.b")

    def test_lookup_whole_document(self) -> None:
        assert lookup_json_path({"a": 1}, ()) == {"a": 1}

    def test_find_conflicts(self) -> None:
        tools = Tools.model_validate(
            {
                "rules": [
                    {"name": "a", "action": "allow", "mcpTools": ["x", "y"]},
                    {"name": "d", "action": "deny", "mcpTools": ["y", "x"]},
                    {"name": "b", "action": "allow", "mcpTools": ["x"]},
                ]
            }
        )
        conflicts = find_conflicts(tools)
        assert [(i, j) for i, j, _ in conflicts] == [(0, 1)]


def test_highest_risk_of_matching_allow_rules_counts_for_llm_calls() -> None:
    # Found by the rule-order property test: the first matching rule used to win.
    a = authorizer(
        [
            {"name": "cheap", "action": "allow", "kind": "llm"},
            {"name": "costly", "action": "allow", "kind": "llm", "risk": 0.5},
        ]
    )
    r = a.authorize(llm())
    assert (r.rule, r.risk) == ("costly", 0.5)
