"""Alias-path targets resolved once per policy: the same request target gives the target a
fresh resolution gives, a new policy resolves again, and the store stays bounded."""

from __future__ import annotations

from dataclasses import dataclass

from haltgate.governance.errors import HaltgateError
from haltgate.governance.policy import GovernancePolicySpec
from haltgate.sidecar import target_resolution
from haltgate.sidecar.classify import Target
from haltgate.sidecar.controls import Controls, compile_controls
from haltgate.sidecar.target_resolution import resolve_explicit


@dataclass
class Head:
    """What resolve_explicit reads of a request."""

    raw_path: str
    method: str = "POST"


def controls(url: str, base: str = "") -> Controls:
    return compile_controls(
        GovernancePolicySpec.model_validate(
            {
                "selector": {"matchLabels": {"app": "a"}},
                "upstreams": [{"name": "llm", "url": url + base, "kind": "llm"}],
            }
        )
    )


def fresh(raw: str, c: Controls) -> Target | HaltgateError:
    target_resolution._resolved = target_resolution._Resolved()
    return resolve_explicit(Head(raw), c)  # type: ignore[arg-type]


def test_a_target_resolved_again_is_the_one_a_fresh_resolution_gives() -> None:
    c = controls("http://127.0.0.1:9000", "/openai")
    raw = "/llm/v1/chat/completions?api-version=1"
    first = fresh(raw, c)
    assert isinstance(first, Target)
    again = resolve_explicit(Head(raw), c)  # type: ignore[arg-type]
    assert again is first  # kept: immutable, a function of the raw target and policy
    assert again == fresh(raw, c)
    assert (first.url, first.rule_path) == (
        "http://127.0.0.1:9000/openai/v1/chat/completions?api-version=1",
        "/openai/v1/chat/completions",
    )


def test_a_new_policy_resolves_again() -> None:
    raw = "/llm/v1/chat/completions"
    old = fresh(raw, controls("http://127.0.0.1:9000"))
    new = resolve_explicit(Head(raw), controls("http://127.0.0.1:9001"))  # type: ignore[arg-type]
    assert isinstance(old, Target) and isinstance(new, Target)
    assert (old.port, new.port) == (9000, 9001)


def test_refusals_long_targets_and_connect_are_not_kept_and_the_store_is_bounded() -> None:
    c = controls("http://127.0.0.1:9000")
    assert isinstance(fresh("/nope/v1/x", c), HaltgateError)
    assert isinstance(resolve_explicit(Head("/nope/v1/x"), c), HaltgateError)  # type: ignore[arg-type]
    long = "/llm/" + "a" * target_resolution._Resolved.MAX_TARGET_CHARS
    assert isinstance(resolve_explicit(Head(long), c), Target)  # type: ignore[arg-type]
    assert long not in target_resolution._resolved.targets
    assert isinstance(
        resolve_explicit(Head("/llm/v1/chat/completions", "CONNECT"), c),  # type: ignore[arg-type]
        HaltgateError,
    )
    for i in range(target_resolution._Resolved.MAX_ENTRIES + 10):
        assert isinstance(resolve_explicit(Head(f"/llm/v1/x{i}"), c), Target)  # type: ignore[arg-type]
    assert len(target_resolution._resolved.targets) <= target_resolution._Resolved.MAX_ENTRIES
