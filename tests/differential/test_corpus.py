"""Every case of issue 15's "Why", through the sidecar to each upstream reader: whatever an
upstream executed is what the sidecar decided (or the sidecar refused and nothing ran)."""

from __future__ import annotations

import pytest

from tests.differential.corpus import CASES, CONTROLS, Case
from tests.differential.harness import UPSTREAMS, Bed, Request, report


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case(bed: Bed, case: Case, upstream: str) -> None:
    request = Request(f"{upstream}-{case.kind}", case.method, case.target, case.body,
                      case.headers)
    ex, found = bed.check(request)
    assert not found, "the upstream executed what the sidecar did not decide:\n" + report(
        [(case.name, ex, found)])
    if case.name in CONTROLS:
        assert ex.forwarded and ex.executed, f"control case refused: {ex.refusal}"
