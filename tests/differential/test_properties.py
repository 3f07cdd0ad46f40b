"""Generated requests through the sidecar to each upstream reader: no reading differs.

Bounded for CI (60 examples per property, no deadline: each example is a real round trip
through the sidecar process); ``HALTGATE_DIFFERENTIAL_EXAMPLES=2000`` searches deeper. A
failure prints the request and the divergence, and hypothesis shrinks it to the smallest
spelling that still diverges.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, event, given, settings

from tests.differential import strategies
from tests.differential.harness import Bed, Request, report

EXAMPLES = int(os.environ.get("HALTGATE_DIFFERENTIAL_EXAMPLES", "60"))
BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _agree(bed: Bed, request: Request) -> None:
    ex, found = bed.check(request)
    # --hypothesis-show-statistics tells how many examples were forwarded, refused and why
    event("forwarded" if ex.forwarded else f"refused {ex.refusal}")
    assert not found, "the upstream executed what the sidecar did not decide:\n" + report(
        [("generated", ex, found)]
    )


@BOUNDED
@given(request=strategies.path_requests())
def test_paths(bed: Bed, request: Request) -> None:
    _agree(bed, request)


@BOUNDED
@given(request=strategies.query_requests())
def test_query_strings(bed: Bed, request: Request) -> None:
    _agree(bed, request)


@BOUNDED
@given(request=strategies.override_requests())
def test_method_override_headers(bed: Bed, request: Request) -> None:
    _agree(bed, request)


@BOUNDED
@given(request=strategies.llm_requests())
def test_llm_json_shapes(bed: Bed, request: Request) -> None:
    _agree(bed, request)


@BOUNDED
@given(request=strategies.mcp_requests())
def test_mcp_messages_and_batches(bed: Bed, request: Request) -> None:
    _agree(bed, request)
