"""Fixtures of the differential tests: one bed (Go upstream, Python readers, sidecar) for
all of them, started once on free loopback ports (package scope: stopped after the last
test of this folder, not kept running through the rest of the suite); see
:mod:`tests.differential.harness`.

Sharing is safe: the bed's policy has no budgets, so no request changes how the next one
is decided, and every request carries its own tag."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.differential.harness import Bed, running_bed


@pytest.fixture(scope="package")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    with running_bed(tmp_path_factory.mktemp("differential")) as started:
        yield started
