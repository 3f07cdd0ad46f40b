"""OPAEvaluator against a real OPA server: load, decide, undefined, malformed, errors,
timeouts (a SIGSTOPped OPA), unreachable, fail-open, cache, reload, recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from haltgate.governance.opa import OPAEvaluator, OPAPolicyError
from haltgate.governance.opa_decision import (
    CODE_OPA_DENIED,
    CODE_OPA_ERROR,
    CODE_OPA_MALFORMED,
    CODE_OPA_TIMEOUT,
    CODE_OPA_UNAVAILABLE,
    CODE_OPA_UNDEFINED,
)
from haltgate.governance.opa_input import build_input
from haltgate.governance.policy_base import FailureType
from haltgate.governance.policy_checks import OPA
from haltgate.governance.request import CallView, RequestKind
from haltgate.testbed.process import free_port
from tests.policy.conftest import OPAServer, start_opa

HANG_GUARD_SECONDS = 60
"""Guard against a hang only (a decision that never comes), never a speed figure."""

POLICY = """\
package haltgate

default decision := {"allow": false, "reason": "no rule allows this call"}

decision := {"allow": false, "reason": "personal data to an external host",
             "failure_type": "SAFETY"} if {
    some f in input.findings
    f.detector == "pii"
    not endswith(input.request.host, ".internal")
} else := {"allow": true, "risk": 0.5, "headers": {"x-haltgate-policy": "v1"}} if {
    input.request.kind == "llm"
    input.request.model != "o1"
}
"""

POLICY_V2 = """\
package haltgate

default decision := false

decision if input.request.model == "o1"
"""


def llm(model: str = "gpt-4o", host: str = "api.openai.com") -> dict[str, Any]:
    call = CallView(
        kind=RequestKind.LLM,
        method="POST",
        scheme="https",
        host=host,
        port=443,
        path="/v1/chat/completions",
        model=model,
    )
    return dict(build_input(call))


def settings(**kw: Any) -> OPA:
    return OPA.model_validate({"rego": POLICY, "timeoutMs": 500, **kw})


@pytest.fixture
async def evaluator(opa_server: OPAServer) -> AsyncIterator[OPAEvaluator]:
    ev = OPAEvaluator(settings(), POLICY, url=opa_server.url)
    await ev.start(wait_seconds=10)
    try:
        yield ev
    finally:
        await ev.close()


async def make(
    url: str, rego: str = POLICY, clock: Callable[[], float] = time.monotonic, **kw: Any
) -> OPAEvaluator:
    ev = OPAEvaluator(
        OPA.model_validate({"rego": rego, "timeoutMs": 500, **kw}), rego, url=url, clock=clock
    )
    await ev.start(wait_seconds=10)
    return ev


async def test_allow_with_risk_and_headers(evaluator: OPAEvaluator) -> None:
    assert evaluator.loaded
    d = await evaluator.decide(llm())
    assert (d.allow, d.code, d.risk, dict(d.headers)) == (
        True,
        None,
        0.5,
        {"x-haltgate-policy": "v1"},
    )


async def test_deny_with_reason_from_input(evaluator: OPAEvaluator) -> None:
    doc = llm(host="api.openai.com")
    doc["findings"] = [{"detector": "pii", "entity": "email"}]
    d = await evaluator.decide(doc)
    assert (d.allow, d.code, d.failure_type) == (False, CODE_OPA_DENIED, FailureType.SAFETY)
    assert d.reason == "personal data to an external host"
    doc["request"]["host"] = "llm.internal"
    assert (await evaluator.decide(doc)).allow


async def test_default_deny(evaluator: OPAEvaluator) -> None:
    d = await evaluator.decide(llm(model="o1"))
    assert (d.allow, d.code, d.reason) == (False, CODE_OPA_DENIED, "no rule allows this call")


async def test_bool_decision(opa_server: OPAServer) -> None:
    ev = await make(opa_server.url, POLICY_V2)
    try:
        assert (await ev.decide(llm(model="o1"))).allow
        d = await ev.decide(llm())
        assert (d.allow, d.code) == (False, CODE_OPA_DENIED)
    finally:
        await ev.close()


async def test_undefined(opa_server: OPAServer) -> None:
    rego = 'package haltgate\n\ndecision if input.request.model == "o1"\n'
    ev = await make(opa_server.url, rego)
    try:
        d = await ev.decide(llm())
        assert (d.allow, d.code) == (False, CODE_OPA_UNDEFINED)
        # A decision path the policy does not define is undefined too.
        other = await make(opa_server.url, rego, decisionPath="haltgate/nothing_here")
        try:
            assert (await other.decide(llm(model="o1"))).code == CODE_OPA_UNDEFINED
        finally:
            await other.close()
    finally:
        await ev.close()


@pytest.mark.parametrize(
    "value",
    ['"yes"', "[true]", '{"allow": "true"}', '{"allow": true, "headers": {"Host": "evil"}}'],
)
async def test_malformed(opa_server: OPAServer, value: str) -> None:
    ev = await make(opa_server.url, f"package haltgate\n\ndecision := {value}\n")
    try:
        d = await ev.decide(llm())
        assert (d.allow, d.code) == (False, CODE_OPA_MALFORMED)
    finally:
        await ev.close()


async def test_evaluation_error_is_a_deny_even_fail_open(opa_server: OPAServer) -> None:
    rego = "package haltgate\n\ndecision := true\n\ndecision := false if input.request.kind\n"
    ev = await make(opa_server.url, rego, failMode="open")
    try:
        d = await ev.decide(llm())
        assert (d.allow, d.code, d.fail_open) == (False, CODE_OPA_ERROR, False)
        assert "eval_conflict_error" in d.reason
    finally:
        await ev.close()


async def test_rego_that_does_not_compile_is_rejected_and_old_policy_stays(
    evaluator: OPAEvaluator,
) -> None:
    bad = 'package haltgate\n\ndecision := {"allow": true} if {\n  input.x ==\n}\n'
    with pytest.raises(OPAPolicyError) as info:
        await evaluator.update(settings(), bad)
    assert info.value.errors and info.value.errors[0]["location"]["row"] == 5
    assert "line 5" in str(info.value)
    assert (await evaluator.decide(llm())).allow  # the previous module still decides


async def test_timeout_fails_closed(opa_server: OPAServer) -> None:
    ev = await make(opa_server.url, timeoutMs=300)
    try:
        assert (await ev.decide(llm())).allow
        opa_server.freeze()
        # A frozen OPA never answers: the decision comes from the client's own timeout.
        # wait_for only guards against a hang (far above any load), it measures nothing.
        d = await asyncio.wait_for(ev.decide(llm()), HANG_GUARD_SECONDS)
        assert (d.allow, d.code, d.fail_open) == (False, CODE_OPA_TIMEOUT, False)
        assert d.failure_type is None
        opa_server.thaw()
        assert (await ev.decide(llm())).allow  # recovers once OPA answers again
    finally:
        opa_server.thaw()
        await ev.close()


async def test_timeout_fails_open_when_the_policy_says_so(opa_server: OPAServer) -> None:
    ev = await make(opa_server.url, timeoutMs=300, failMode="open")
    try:
        opa_server.freeze()
        d = await ev.decide(llm(model="o1"))  # would be denied: fail open lets it through
        assert (d.allow, d.code, d.fail_open) == (True, CODE_OPA_TIMEOUT, True)
        assert ev.stats[CODE_OPA_TIMEOUT] == 1
    finally:
        opa_server.thaw()
        await ev.close()


async def test_unreachable_after_opa_stops(opa_server: OPAServer) -> None:
    ev = await make(opa_server.url)
    try:
        opa_server.process.stop(timeout=5)
        d = await ev.decide(llm())
        assert (d.allow, d.code, d.fail_open) == (False, CODE_OPA_UNAVAILABLE, False)
    finally:
        await ev.close()


async def test_unreachable_fail_open_is_counted() -> None:
    ev = OPAEvaluator(settings(failMode="open"), POLICY, url=f"http://127.0.0.1:{free_port()}")
    await ev.start(wait_seconds=0.2)
    try:
        assert not ev.loaded
        d = await ev.decide(llm())
        assert (d.allow, d.code, d.fail_open) == (True, CODE_OPA_UNAVAILABLE, True)
        assert ev.stats[CODE_OPA_UNAVAILABLE] == 1
    finally:
        await ev.close()


async def test_not_started_is_unavailable() -> None:
    ev = OPAEvaluator(settings(), POLICY, url="http://127.0.0.1:1")
    d = await ev.decide(llm())
    assert (d.allow, d.code) == (False, CODE_OPA_UNAVAILABLE)


async def test_policy_loaded_once_opa_comes_up_late(opa_binary: Path, tmp_path: Path) -> None:
    server: OPAServer | None = None
    port = free_port()
    ev = OPAEvaluator(settings(), POLICY, url=f"http://127.0.0.1:{port}")
    try:
        # Start the evaluator first (OPA's container is not up yet), then OPA.
        await ev.start(wait_seconds=0.1)
        assert (await ev.decide(llm())).code == CODE_OPA_UNAVAILABLE
        server = start_opa(opa_binary, tmp_path / "late-opa.log", port)
        decision = None
        for _ in range(100):  # at most ~5 s
            decision = await ev.decide(llm())
            if decision.allow:
                break
            await asyncio.sleep(0.05)
        assert decision is not None and decision.allow and ev.loaded
    finally:
        await ev.close()
        if server is not None:
            server.process.stop(timeout=5)


async def test_reloads_policy_that_opa_lost(evaluator: OPAEvaluator, opa_server: OPAServer) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.delete(f"{opa_server.url}/v1/policies/haltgate/policy") as r,
    ):
        assert r.status == 200
    first = await evaluator.decide(llm())
    assert first.code == CODE_OPA_UNDEFINED  # the module is gone from OPA
    decision = first
    for _ in range(100):  # the background check reloads it; at most ~5 s
        await asyncio.sleep(0.05)
        decision = await evaluator.decide(llm())
        if decision.allow:
            break
    assert decision.allow


async def test_cache_serves_identical_inputs_until_ttl(opa_server: OPAServer) -> None:
    now = [1000.0]
    ev = await make(opa_server.url, clock=lambda: now[0], cacheTtlSeconds=30, timeoutMs=300)
    try:
        first = await ev.decide(llm())
        assert first.allow and not first.cached
        opa_server.freeze()  # from now on only the cache can answer
        again = await ev.decide(llm())
        assert again.allow and again.cached
        # Same content, other key order: same cache entry.
        reordered = dict(reversed(list(llm().items())))
        assert (await ev.decide(reordered)).cached
        other = await ev.decide(llm(model="gpt-4o-mini"))
        assert other.code == CODE_OPA_TIMEOUT  # a different input is not served from cache
        now[0] += 31
        expired = await ev.decide(llm())
        assert expired.code == CODE_OPA_TIMEOUT
        assert ev.stats["cache_hit"] == 2
    finally:
        opa_server.thaw()
        await ev.close()


async def test_cache_never_keeps_failures(opa_server: OPAServer) -> None:
    ev = await make(opa_server.url, cacheTtlSeconds=30, timeoutMs=300)
    try:
        opa_server.freeze()
        assert (await ev.decide(llm())).code == CODE_OPA_TIMEOUT
        opa_server.thaw()
        d = await ev.decide(llm())
        assert d.allow and not d.cached
    finally:
        opa_server.thaw()
        await ev.close()


async def test_update_clears_cache_and_switches_policy(opa_server: OPAServer) -> None:
    ev = await make(opa_server.url, cacheTtlSeconds=30)
    try:
        assert (await ev.decide(llm())).allow
        await ev.update(OPA.model_validate({"rego": POLICY_V2, "cacheTtlSeconds": 30}), POLICY_V2)
        d = await ev.decide(llm())
        assert (d.allow, d.cached) == (False, False)
        assert (await ev.decide(llm(model="o1"))).allow
    finally:
        await ev.close()


async def test_reload_under_load_drops_no_decision(opa_server: OPAServer) -> None:
    ev = await make(opa_server.url, timeoutMs=2000)
    try:
        outcomes: list[tuple[bool, str | None]] = []
        stop = asyncio.Event()

        async def client() -> None:
            for _ in range(400):  # bounded even if `stop` never comes
                if stop.is_set():
                    return
                d = await ev.decide(llm())
                outcomes.append((d.allow, d.code))

        clients = [asyncio.create_task(client()) for _ in range(8)]
        for i in range(6):
            rego = POLICY if i % 2 else POLICY_V2
            await ev.update(OPA.model_validate({"rego": rego, "timeoutMs": 2000}), rego)
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.gather(*clients)
        assert len(outcomes) > 50
        codes = {code for _, code in outcomes}
        assert codes <= {None, CODE_OPA_DENIED}, codes  # every answer came from a policy
        assert {allow for allow, _ in outcomes} == {True, False}  # both policies answered
        # The last update (i == 5) loaded POLICY: it decides from now on.
        assert (await ev.decide(llm())).allow
    finally:
        await ev.close()


async def test_refresh_picks_up_a_changed_configmap_file(
    opa_server: OPAServer, tmp_path: Path
) -> None:
    (tmp_path / "policy.rego").write_text(POLICY)
    spec = OPA.model_validate({"configMapRef": {"name": "cm", "key": "policy.rego"}})
    ev = OPAEvaluator(spec, POLICY, url=opa_server.url)
    await ev.start()
    try:
        assert not await ev.refresh(tmp_path)  # unchanged: nothing to do
        assert (await ev.decide(llm())).allow
        (tmp_path / "policy.rego").write_text(POLICY_V2)  # kubelet swaps the mounted file
        assert await ev.refresh(tmp_path)
        assert not (await ev.decide(llm())).allow
        assert (await ev.decide(llm(model="o1"))).allow
    finally:
        await ev.close()
