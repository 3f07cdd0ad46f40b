"""Property tests of the ToolAuthorizer (hypothesis): laws that hold for any policy."""

from __future__ import annotations

import fnmatch
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haltgate.governance.glob_match import compile_glob
from haltgate.governance.policy_rules import Tools
from haltgate.governance.request import CallView, RequestKind, ToolCall
from haltgate.governance.tool_arguments import compile_json_path, lookup_json_path
from haltgate.governance.tools import ToolAuthorizer

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NAMES = ["get_file", "get_issue", "list_repos", "create_issue", "delete_repo", "sql"]
HOSTS = ["api.openai.com", "mcp.github.com", "api.internal", "evil.example"]
MODELS = ["gpt-4o", "gpt-4o-mini", "o1-preview", "claude-sonnet"]
PATHS = ["/v1/chat/completions", "/mcp", "/api/v1/items", "/admin"]

globs_of = (  # noqa: E731
    lambda pool: st.lists(
        st.sampled_from(pool) | st.sampled_from(pool).map(lambda s: s[: max(1, len(s) // 2)] + "*"),
        max_size=2,
    )
)

constraint = st.sampled_from(
    [
        {"path": "$.repo", "in": ["acme/app", "acme/web"]},
        {"path": "$.title", "maxLength": 5},
        {"path": "$.q", "regex": "(?i)drop"},
        {"path": "$.flag", "equals": True},
    ]
)


@st.composite
def rules(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(0, 6))):
        rule: dict[str, Any] = {
            "name": f"r{i}",
            "action": draw(st.sampled_from(["allow", "deny"])),
            "risk": draw(st.sampled_from([0, 0.5, 2])),
        }
        kind = draw(st.sampled_from([None, "llm", "mcp", "http"]))
        if kind:
            rule["kind"] = kind
        if hosts := draw(globs_of(HOSTS)):
            rule["hosts"] = hosts
        if kind in (None, "llm") and (models := draw(globs_of(MODELS))):
            rule["models"] = models
        if kind in (None, "mcp"):
            if tools := draw(globs_of(NAMES)):
                rule["mcpTools"] = tools
            if args := draw(st.lists(constraint, max_size=2)):
                rule["arguments"] = args
        if paths := draw(globs_of(PATHS)):
            rule["paths"] = paths
        out.append(rule)
    return out


arguments = st.fixed_dictionaries(
    {},
    optional={
        "repo": st.sampled_from(["acme/app", "evil/x"]),
        "title": st.sampled_from(["hi", "a long title"]),
        "q": st.sampled_from(["select", "DROP table"]),
        "flag": st.sampled_from([True, False, 1]),
    },
)


@st.composite
def calls(draw: st.DrawFn) -> CallView:
    kind = draw(st.sampled_from([RequestKind.LLM, RequestKind.MCP, RequestKind.HTTP, None]))
    tool_calls: tuple[ToolCall, ...] = ()
    mcp_method = None
    if kind is RequestKind.MCP:
        tool_calls = tuple(
            ToolCall(draw(st.sampled_from(NAMES)), draw(arguments), "github")
            for _ in range(draw(st.integers(0, 3)))
        )
        mcp_method = (
            "tools/call" if tool_calls else draw(st.sampled_from(["initialize", "tools/list"]))
        )
    return CallView(
        kind=kind,
        method=draw(st.sampled_from(["GET", "POST"])),
        scheme="https",
        host=draw(st.sampled_from(HOSTS)),
        port=443,
        path=draw(st.sampled_from(PATHS)),
        model=draw(st.sampled_from(MODELS)) if kind is RequestKind.LLM else None,
        tool_calls=tool_calls,
        mcp_method=mcp_method,
    )


def build(rs: list[dict[str, Any]], default: str = "deny") -> ToolAuthorizer:
    return ToolAuthorizer(Tools.model_validate({"default": default, "rules": rs}))


@SETTINGS
@given(rules(), calls(), st.randoms(use_true_random=False), st.sampled_from(["allow", "deny"]))
def test_rule_order_does_not_change_the_decision(
    rs: list[dict[str, Any]], call: CallView, rnd: Any, default: str
) -> None:
    shuffled = list(rs)
    rnd.shuffle(shuffled)
    a, b = build(rs, default).authorize(call), build(shuffled, default).authorize(call)
    assert (a.allowed, a.code) == (b.allowed, b.code)
    if a.allowed:
        assert a.risk == b.risk


@SETTINGS
@given(rules(), calls(), st.sampled_from(["allow", "deny"]))
def test_adding_a_catch_all_deny_denies_every_governed_kind(
    rs: list[dict[str, Any]], call: CallView, default: str
) -> None:
    if call.kind is None:
        return
    denied = build([*rs, {"name": "stop", "action": "deny", "kind": call.kind.value}], default)
    result = denied.authorize(call)
    assert not result.allowed
    assert result.code == "tool_denied"


@SETTINGS
@given(rules(), calls(), st.sampled_from(["allow", "deny"]), st.booleans())
def test_monotonic_allow_never_denies_deny_never_allows(
    rs: list[dict[str, Any]], call: CallView, default: str, add_allow: bool
) -> None:
    before = build(rs, default).authorize(call).allowed
    extra = {"name": "extra", "action": "allow" if add_allow else "deny", "hosts": ["*"]}
    after = build([*rs, extra], default).authorize(call).allowed
    if add_allow:
        assert after or not before
    else:
        assert before or not after


@SETTINGS
@given(rules(), st.lists(calls(), min_size=1, max_size=8), st.sampled_from(["allow", "deny"]))
def test_memoized_plans_agree_with_a_fresh_authorizer(
    rs: list[dict[str, Any]], seq: list[CallView], default: str
) -> None:
    warm = build(rs, default)
    for call in seq:
        assert warm.authorize(call) == build(rs, default).authorize(call)


@SETTINGS
@given(st.text(alphabet="ab.-_*?", min_size=1, max_size=8), st.text(alphabet="ab.-_", max_size=10))
def test_name_globs_agree_with_fnmatch(pattern: str, name: str) -> None:
    rx = compile_glob([pattern])
    assert rx is not None
    assert (rx.match(name) is not None) == fnmatch.fnmatchcase(name, pattern)


@SETTINGS
@given(st.text(alphabet="ab/*", min_size=1, max_size=8), st.text(alphabet="ab/", max_size=10))
def test_single_star_never_crosses_a_path_segment(pattern: str, path: str) -> None:
    rx = compile_glob([pattern], separator="/")
    assert rx is not None
    if "**" not in pattern and rx.match(path):
        assert path.count("/") == pattern.count("/")


json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
steps = st.lists(
    st.from_regex(r"[A-Za-z0-9_-]{1,6}", fullmatch=True) | st.integers(0, 3), max_size=4
)


@SETTINGS
@given(steps, json_scalars)
def test_json_path_finds_what_was_put_there(path_steps: list[str | int], value: Any) -> None:
    doc: Any = value
    for step in reversed(path_steps):
        doc = {step: doc} if isinstance(step, str) else [None] * step + [doc]
    text = "$" + "".join(f".{s}" if isinstance(s, str) else f"[{s}]" for s in path_steps)
    assert lookup_json_path(doc, compile_json_path(text)) == value
