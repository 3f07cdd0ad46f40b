"""A detector that raises blocks the call under failMode: closed, so detectors must not raise
on any input: arbitrary Unicode, near-miss encodings, pathological repetitions."""

from __future__ import annotations

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haltgate.governance.guardrails import InjectionDetector, PIIDetector, SecretsDetector

DETECTORS = (InjectionDetector(), PIIDetector(), SecretsDetector())

fragments = st.sampled_from(
    [
        "ignore",
        " previous ",
        "instructions",
        "@",
        ".com",
        "+44 ",
        "4526 0181",
        "-----BEGIN ",
        "PRIVATE KEY-----",
        "password=",
        "sk-",
        "ghp_",
        "%41%42",
        "\\x41",
        "\u200b",
        "\U000e0041",
        "\u0456gn\u043er\u0435",
        "0x",
        "==",
        "::",
        "1.2.3.4",
        "DE89",
        "date of birth: ",
        "<|im_start|>",
        "\n",
    ]
)
texts = st.one_of(
    st.text(max_size=400),
    st.lists(st.one_of(fragments, st.text(max_size=8)), max_size=40).map("".join),
    st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_detectors_never_raise_and_spans_are_valid(text: str) -> None:
    for d in DETECTORS:
        for c in d.detect(text):
            assert 0 <= c.start <= c.end <= len(text), (d.name, c)
            assert 0.0 <= c.score <= 1.0


def test_pathological_repetitions_stay_bounded() -> None:
    # Long runs that stress backtracking and decoding: each must finish (pytest-timeout
    # would fail the test otherwise) and find nothing absurd.
    for text in (
        "a" * 200_000,
        "1 " * 50_000,
        "ignore " * 20_000,
        "%41" * 30_000,
        "A" * 100_000 + "=",
        "x@" * 30_000,
        ":" * 50_000,
    ):
        for d in DETECTORS:
            d.detect(text)
