"""Every case of issue 15's "Why", through the sidecar to each upstream reader, by alias and
in absolute (proxy) form: whatever an upstream executed is what the sidecar decided (or the
sidecar refused and nothing ran)."""

from __future__ import annotations

import pytest

from tests.differential.corpus import CASES, CONTROLS, Case
from tests.differential.harness import UPSTREAMS, Bed, Request, report


@pytest.mark.parametrize("form", ["alias", "proxy"])
@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.name, marks=pytest.mark.xfail(strict=True, reason=c.open_divergence))
    if c.open_divergence else pytest.param(c, id=c.name) for c in CASES])
def test_corpus_case(bed: Bed, case: Case, upstream: str, form: str) -> None:
    request = Request(f"{upstream}-{case.kind}", case.method, case.target, case.body,
                      case.headers, proxy=form == "proxy")
    ex, found = bed.check(request)
    assert not found, "the upstream executed what the sidecar did not decide:\n" + report(
        [(case.name, ex, found)])
    if case.name in CONTROLS:
        assert ex.forwarded and ex.executed, f"control case refused: {ex.refusal}"
