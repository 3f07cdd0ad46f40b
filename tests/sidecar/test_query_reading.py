"""One reading of the query string and of routing headers, through a real sidecar to the
stand-in HTTP API (docs/threat-model.md, "Requests read two ways").

The query used to be forwarded as sent and read by no rule: ``?action=delete`` passed a
rule refusing that value, and parsers upstream read the same bytes differently. Now the
query is read once (``haltgate.governance.canonical_query``), HTTP rules read its
parameters as arguments ``$.query.<name>``, and the canonical form is what the upstream
receives. Headers that make a framework rebuild the request's URL (``X-Forwarded-Prefix``
and the like) are refused as ``meaning_override``, like the method overrides before them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest

from tests.sidecar.conftest import SidecarFactory, Standins
from tests.sidecar.test_one_reading import code_of, policy, raw_http

DENY_DELETE_ACTION = {
    "name": "no-delete-action",
    "action": "deny",
    "kind": "http",
    "arguments": [{"path": "$.query.action", "in": ["delete", "purge"]}],
}
ONLY_LIST_ACTION = {
    "name": "list-only",
    "action": "allow",
    "kind": "http",
    "arguments": [{"path": "$.query.action", "equals": "list"}],
}


@pytest.mark.parametrize(
    ("target", "status", "code"),
    [
        ("/api/echo/items?action=delete", 403, "tool_denied"),  # the rule reads the query
        ("/api/echo/items?x=1&action=purge", 403, "tool_denied"),
        ("/api/echo/items?action=%64elete", 403, "tool_denied"),  # decoded once, then read
        ("/api/echo/items?action=del%65te&y", 403, "tool_denied"),
        ("/api/echo/items?Action=delete", 400, "ambiguous_query"),  # ASP.NET reads `action`
        ("/api/echo/items?ACTION=list", 400, "ambiguous_query"),
        ("/api/echo/items?action=list&action=delete", 400, "ambiguous_query"),  # first/last
        ("/api/echo/items?action[]=delete", 400, "ambiguous_query"),  # PHP, Rails arrays
        ("/api/echo/items?%20action=delete", 400, "ambiguous_query"),  # PHP trims names
        ("/api/echo/items?action=%2564elete", 400, "ambiguous_query"),  # decoded twice
        ("/api/echo/items?a=1;action=delete", 400, "ambiguous_query"),  # ';' separator
        ("/api/echo/items?action=%zzdelete", 400, "ambiguous_query"),  # malformed escape
        ("/api/echo/items?action=delete%00", 400, "ambiguous_query"),  # NUL
    ],
)
async def test_query_spellings_of_a_denied_action(
    sidecar_factory: SidecarFactory, standins: Standins, target: str, status: int, code: str
) -> None:
    sc = await sidecar_factory(policy(DENY_DELETE_ACTION))
    got, payload = await raw_http(sc.explicit, "GET", target)
    assert (got, code_of(payload)) == (status, code), payload
    assert not standins.received("api").requests


async def test_the_upstream_receives_the_query_the_rules_read(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(policy(DENY_DELETE_ACTION))
    status, payload = await raw_http(
        sc.explicit, "GET", "/api/echo/items?action=li%73t&q=a+b%2Bc&&u=%2Fx%3F&t=%7e&flag"
    )
    assert status == 200, payload
    (received,) = standins.received("api").requests
    # One encoder: unreserved decoded, a space is %20 (never '+'), a '+' is %2B, empty
    # pairs dropped, what is structure to no parser ('/', '?') literal.
    assert received.raw_query == "action=list&q=a%20b%2Bc&u=/x?&t=~&flag"
    assert parse_qsl(received.raw_query, keep_blank_values=True) == [
        ("action", "list"),
        ("q", "a b+c"),
        ("u", "/x?"),
        ("t", "~"),
        ("flag", ""),
    ]


async def test_names_no_rule_reads_stay_as_lenient_as_before(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(policy(DENY_DELETE_ACTION))
    status, payload = await raw_http(sc.explicit, "GET", "/api/echo/items?tag=a&tag=b&Tag=c")
    assert status == 200, payload
    (received,) = standins.received("api").requests
    assert received.raw_query == "tag=a&tag=b&Tag=c"


@pytest.mark.parametrize(
    "target",
    ["/api/echo/x?a=1;b=2", "/api/echo/x?a=%", "/api/echo/x?a=%0", "/api/echo/x?%00=1"],
)
async def test_queries_without_one_reading_are_refused_whatever_the_rules(
    sidecar_factory: SidecarFactory, standins: Standins, target: str
) -> None:
    sc = await sidecar_factory(policy())
    status, payload = await raw_http(sc.explicit, "GET", target)
    assert (status, code_of(payload)) == (400, "ambiguous_query"), payload
    assert not standins.received("api").requests


@pytest.mark.parametrize(
    ("target", "status", "code"),
    [
        ("/api/echo/items?action=list", 200, None),
        ("/api/echo/items?action=delete", 403, "argument_constraint_failed"),
        ("/api/echo/items", 403, "argument_constraint_failed"),
        ("/api/echo/items?action=list&action=delete", 400, "ambiguous_query"),
    ],
)
async def test_allow_rule_on_a_query_parameter(
    sidecar_factory: SidecarFactory, standins: Standins, target: str, status: int, code: str
) -> None:
    sc = await sidecar_factory(policy(ONLY_LIST_ACTION, default="deny"))
    got, payload = await raw_http(sc.explicit, "GET", target)
    assert (got, code_of(payload)) == (status, code), payload
    assert len(standins.received("api").requests) == (1 if status == 200 else 0)


async def test_proxy_form_reads_the_query_the_same_way(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(policy(DENY_DELETE_ACTION))
    status, payload = await raw_http(sc.explicit, "GET", f"{standins.api}/echo/x?action=%64elete")
    assert (status, code_of(payload)) == (403, "tool_denied")
    status, payload = await raw_http(sc.explicit, "GET", f"{standins.api}/echo/x?q=a+b")
    assert status == 200, payload
    (received,) = standins.received("api").requests
    assert received.raw_query == "q=a%20b"


def test_http_rule_arguments_must_name_a_query_parameter() -> None:
    from haltgate.governance.validation import validate_document

    bad: dict[str, Any] = {
        "name": "bad",
        "action": "deny",
        "kind": "http",
        "arguments": [{"path": "$.action", "equals": "delete"}],
    }
    doc = {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "p"},
        "spec": {"tools": {"rules": [bad]}},
    }
    result = validate_document(doc)
    assert [i.path for i in result.errors] == ["spec.tools.rules[0].arguments[0].path"]
    ok = {**bad, "arguments": [{"path": "$.query.action", "equals": "delete"}]}
    assert validate_document({**doc, "spec": {"tools": {"rules": [ok]}}}).ok


# ---------------------------------------------------------------------- routing headers


@pytest.mark.parametrize(
    "header",
    [
        "X-Forwarded-Prefix",
        "X-Forwarded-Path",
        "X-Forwarded-Uri",
        "X-Original-URI",
        "X-Envoy-Original-Path",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
        "X-Forwarded-Port",
        "Forwarded",
        "X-Original-URL",
        "X-Rewrite-URL",
        "X-HTTP-Method-Override",
        "X-Method-Override",
        "X-HTTP-Method",
    ],
)
async def test_routing_headers_are_refused_naming_the_header(
    sidecar_factory: SidecarFactory, standins: Standins, header: str
) -> None:
    sc = await sidecar_factory(policy(DENY_DELETE_ACTION))
    status, payload = await raw_http(sc.explicit, "GET", "/api/echo/items", b"", {header: "/x"})
    assert (status, code_of(payload)) == (400, "meaning_override"), payload
    assert header.lower() in payload["error"]["message"]
    assert not standins.received("api").requests


@pytest.mark.parametrize(
    "target", ["/api/items?_Method=DELETE", "/api/items?_method[]=DELETE", "/api/items?_method+=x"]
)
async def test_method_parameter_spellings_are_refused(
    sidecar_factory: SidecarFactory, standins: Standins, target: str
) -> None:
    sc = await sidecar_factory(policy())
    status, payload = await raw_http(sc.explicit, "POST", target, b'{"name":"x"}')
    assert (status, code_of(payload)) == (400, "meaning_override"), payload
    assert not standins.received("api").requests


QUERY_REGO = """
package haltgate

import rego.v1

default decision := {"allow": true}

decision := {"allow": false, "reason": "no deletes", "failure_type": "SAFETY"} if {
    "delete" in input.request.query.action
}
"""


@pytest.mark.opa
async def test_opa_reads_the_query_as_forwarded(
    sidecar_factory: SidecarFactory, standins: Standins, opa_server: str
) -> None:
    sc = await sidecar_factory(policy(opa={"rego": QUERY_REGO}), opa_url=opa_server)
    for target in ("/api/echo/x?action=del%65te", "/api/echo/x?action=list&action=delete"):
        status, payload = await raw_http(sc.explicit, "GET", target)
        assert (status, code_of(payload)) == (403, "opa_denied"), (target, payload)
    status, payload = await raw_http(sc.explicit, "GET", "/api/echo/x?action=list")
    assert status == 200, payload
    assert len(standins.received("api").requests) == 1
