"""The agent's answer headers: the upstream's in order (repeated names kept, hop-by-hop
ones dropped), redacted values in their place, then haltgate's own."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.request import AgentIdentity
from haltgate.sidecar import responses as r
from haltgate.sidecar.call import Call
from haltgate.sidecar.controls import compile_controls
from haltgate.sidecar.relay_headers import relayed_items, response_headers

UPSTREAM = [
    ("Content-Type", "application/json"),
    ("Set-Cookie", "a=1"),
    ("Connection", "keep-alive"),
    ("set-cookie", "b=2"),
    ("Transfer-Encoding", "chunked"),
    ("Link", "<https://x.test/1>"),
    ("X-Request-Id", "r-1"),
    ("link", "<https://x.test/2>"),
]


def _call() -> Call:
    spec = GovernancePolicySpec.model_validate({"selector": {"matchLabels": {"app": "a"}}})
    return Call("d-1", 0.0, 0.0, compile_controls(spec), AgentIdentity())


@pytest.mark.parametrize("redacted", [None, {}, {1: "<SECRET_1>", 5: "<SECRET_2>"}])
def test_answer_headers_keep_order_and_repeats_and_redactions(
    redacted: dict[int, str] | None,
) -> None:
    headers = CIMultiDictProxy(CIMultiDict(UPSTREAM))
    out = response_headers(headers, _call(), None, redacted)
    # What adding each relayed header in turn gives (the positions name the redactions).
    expected: CIMultiDict[str] = CIMultiDict()
    for i, (name, value) in enumerate(relayed_items(headers)):
        expected.add(name, value if redacted is None else redacted.get(i, value))
    expected[r.DECISION_HEADER] = "d-1"
    assert list(out.items()) == list(expected.items())
    assert [n for n, _ in out.items()][:6] == [
        "Content-Type", "Set-Cookie", "set-cookie", "Link", "X-Request-Id", "link",
    ]  # fmt: skip
    if redacted:
        assert out.getall("Set-Cookie") == ["<SECRET_1>", "b=2"]
        assert out.getall("Link") == ["<https://x.test/1>", "<SECRET_2>"]
    else:
        assert out.getall("Set-Cookie") == ["a=1", "b=2"]
        assert out.getall("Link") == ["<https://x.test/1>", "<https://x.test/2>"]
