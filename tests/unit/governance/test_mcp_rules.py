"""``spec.mcp``: canonical resource URIs, the rules, and validation naming the field."""

from __future__ import annotations

import pytest

from haltgate.governance.mcp import McpAuthorizer, canonical_uri, strip_client_capabilities
from haltgate.governance.policy_rules import Mcp
from haltgate.governance.validation import validate_document
from tests.unit.test_policy_validation import messages, policy


@pytest.mark.parametrize(
    ("uri", "canonical"),
    [
        ("file:///etc/shadow", "file:///etc/shadow"),
        ("FILE:///etc/shadow", "file:///etc/shadow"),
        ("HTTPS://Docs.Example.COM/A/b?x=1", "https://docs.example.com/A/b?x=1"),
        ("file:///srv/docs/", "file:///srv/docs/"),
        ("file:///srv/my%20doc.txt", "file:///srv/my%20doc.txt"),
        ("urn:isbn:123", "urn:isbn:123"),
    ],
)
def test_canonical_uri(uri: str, canonical: str) -> None:
    assert canonical_uri(uri) == canonical


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "file:///srv/../etc/shadow",
        "file:///srv/./x",
        "file:///srv/x/..",
        "file:///srv/%2e%2e/etc",
        "file:///srv%2Fetc",
        "file:///srv%5Cetc",
        "file:///x%00",
        "file:///%73rv/x",
        "file:///srv//x",
        "file:///srv\\x",
        "file:///srv/x\n",
        "/etc/shadow",
        "file:///x%zz",
        "file:///x%4",
    ],
)
def test_ambiguous_uris_are_refused(uri: str) -> None:
    with pytest.raises(ValueError):
        canonical_uri(uri)


def test_deny_wins_then_allow_then_default() -> None:
    rules = McpAuthorizer(
        Mcp.model_validate(
            {
                "resources": {
                    "rules": [
                        {"name": "docs", "action": "allow", "uris": ["file:///srv/**"], "risk": 2},
                        {"name": "keys", "action": "deny", "uris": ["file:///srv/keys/*"]},
                        {
                            "name": "other-server",
                            "action": "allow",
                            "mcpServers": ["fs-*"],
                            "uris": ["**"],
                        },
                    ]
                }
            }
        )
    )
    servers = ("docs-server", "127.0.0.1")
    assert rules.resources.decide(servers, "file:///srv/a/b").risk == 2
    assert rules.resources.decide(servers, "file:///srv/keys/id").code == "resource_denied"
    assert rules.resources.decide(servers, "file:///etc/x").code == "resource_not_allowed"
    assert rules.resources.decide(("fs-1", None), "file:///etc/x").allowed
    assert not rules.sampling and not rules.elicitation
    assert not rules.server_request_allowed("sampling/createMessage")
    assert rules.server_request_allowed("roots/list")


def test_capabilities_stripped_only_when_denied() -> None:
    params = {"capabilities": {"sampling": {}, "roots": {}}, "clientInfo": {}}
    assert strip_client_capabilities(params, sampling=False, elicitation=False) == {
        "capabilities": {"roots": {}},
        "clientInfo": {},
    }
    assert strip_client_capabilities(params, sampling=True, elicitation=False) is None


def test_validation_names_the_field() -> None:
    errors = messages(
        policy(
            {
                "mcp": {
                    "sampling": "maybe",
                    "resources": {
                        "default": "deny",
                        "rules": [
                            {"name": "a", "action": "allow", "uris": ["file:///srv/../etc/**"]},
                            {"name": "a", "action": "allow", "urls": ["x"]},
                        ],
                    },
                    "prompts": {"rules": [{"name": "p", "action": "allow", "prompts": [1]}]},
                }
            }
        )
    )
    assert "spec.mcp.sampling" in errors
    assert "spec.mcp.resources.rules[1].urls" in errors
    assert "spec.mcp.prompts.rules[0].prompts[0]" in errors
    errors = messages(
        policy(
            {
                "mcp": {
                    "resources": {
                        "rules": [
                            {"name": "a", "action": "allow", "uris": ["file:///srv/../etc/**"]},
                            {"name": "a", "action": "allow", "uris": ["file:///srv/**", "**"]},
                        ]
                    }
                }
            }
        )
    )
    assert "dot segment" in errors["spec.mcp.resources.rules[0].uris[0]"]
    assert "duplicate rule name" in errors["spec.mcp.resources.rules[1].name"]
    assert set(errors) == {
        "spec.mcp.resources.rules[0].uris[0]",
        "spec.mcp.resources.rules[1].name",
    }
    assert validate_document(policy({"mcp": {"sampling": "allow"}})).ok


@pytest.mark.parametrize(
    ("template", "listed"),
    [
        ("file:///srv/docs/public/{name}", True),
        ("FILE:///srv/docs/public/{name}", True),  # the fixed start is read canonically
        ("file:///srv/docs/{name}", False),  # conservative: the deny rule lies under it
        ("file:///srv/docs/private/{name}", False),  # a deny rule could match an expansion
        ("file:///srv/docs{/name}", False),  # the start is not under the allowing glob
        ("file:///srv/{area}/readme", False),
        ("{+uri}", False),
        ("file:///srv/docs/%2e%2e/{name}", False),  # an ambiguous start: never listed
    ],
)
def test_template_listed_only_when_every_expansion_is_allowed(template: str, listed: bool) -> None:
    from haltgate.governance.mcp import template_prefix

    rules = McpAuthorizer(
        Mcp.model_validate(
            {
                "resources": {
                    "rules": [
                        {"name": "docs", "action": "allow", "uris": ["file:///srv/docs/**"]},
                        {
                            "name": "private",
                            "action": "deny",
                            "uris": ["file:///srv/docs/private/**"],
                        },
                    ]
                }
            }
        )
    )
    try:
        got = rules.resources.allows_every(("mcp",), template_prefix(template))
    except ValueError:
        got = False
    assert got is listed
