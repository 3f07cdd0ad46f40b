"""Every case of issue 15's "Why", through the sidecar to each upstream reader, by alias and
in absolute (proxy) form: whatever an upstream executed is what the sidecar decided (or the
sidecar refused and nothing ran)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.differential.corpus import CASES, CONTROLS, Case
from tests.differential.harness import UPSTREAMS, Bed, Request, report


def _params() -> list[Any]:
    """case x upstream x form; a case with an open divergence is a strict expected failure
    on the readers and forms it shows on (so the mark has to go once it is fixed)."""
    out = []
    for case in CASES:
        for upstream in UPSTREAMS:
            for form in ("alias", "proxy"):
                marks = (
                    [pytest.mark.xfail(strict=True, reason=case.open_divergence)]
                    if (
                        case.open_divergence
                        and upstream in case.open_on
                        and form in case.open_forms
                    )
                    else []
                )
                out.append(
                    pytest.param(
                        case, upstream, form, marks=marks, id=f"{case.name}-{upstream}-{form}"
                    )
                )
    return out


@pytest.mark.parametrize(("case", "upstream", "form"), _params())
def test_corpus_case(bed: Bed, case: Case, upstream: str, form: str) -> None:
    request = Request(
        f"{upstream}-{case.kind}",
        case.method,
        case.target,
        case.body,
        case.headers,
        proxy=form == "proxy",
        chunked=case.chunked,
    )
    ex, found = bed.check(request)
    assert not found, "the upstream executed what the sidecar did not decide:\n" + report(
        [(case.name, ex, found)]
    )
    if case.name in CONTROLS:
        assert ex.forwarded and ex.executed, f"control case refused: {ex.refusal}"
