"""The secrets guardrail on URLs and headers: what is scanned, what is exempt, how a
redaction is written back, and that no URL or header value makes it raise."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haltgate.governance.guardrails.request_meta import scan_request_meta
from tests.guardrails.conftest import make_guardrails

GITHUB = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
BLOCK = make_guardrails({"secrets": {"action": "block", "direction": "request"}})
REDACT = make_guardrails({"secrets": {"action": "redact", "direction": "request"}})
PII_ONLY = make_guardrails({"pii": {"action": "block"}})


def test_credential_headers_are_exempt_others_are_not() -> None:
    for name in ("Authorization", "x-api-key", "Cookie", "Proxy-Authorization"):
        assert not scan_request_meta(BLOCK, "/", "", [(name, f"Bearer {GITHUB}")]).findings
    r = scan_request_meta(BLOCK, "/", "", [("X-Forwarded-Note", GITHUB)])
    assert r.blocked and r.code == "guardrail_secrets"


def test_only_when_the_secrets_detector_runs_on_requests() -> None:
    assert (
        scan_request_meta(PII_ONLY, f"/{GITHUB}", "", [])
        == type(scan_request_meta(PII_ONLY, "/", "", []))()
    )


def test_redaction_keeps_other_parameters_byte_for_byte() -> None:
    r = scan_request_meta(REDACT, f"/a%20b/{GITHUB}", f"x=a%26b&t={GITHUB}&y=%2F", [])
    assert r.path == "/a%20b/%3CGITHUB_TOKEN_1%3E"
    assert r.query == "x=a%26b&t=%3CGITHUB_TOKEN_1%3E&y=%2F"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(max_size=60),
    st.text(max_size=60),
    st.lists(st.tuples(st.text(min_size=1, max_size=10), st.text(max_size=40)), max_size=5),
)
def test_never_raises(path: str, query: str, headers: list[tuple[str, str]]) -> None:
    for g in (BLOCK, REDACT):
        r = scan_request_meta(g, path, query, headers)
        assert not r.errors
