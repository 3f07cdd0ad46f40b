"""Fixtures of the differential tests: one bed (Go upstream, Python readers, sidecar) per
module, started on free loopback ports; see :mod:`tests.differential.harness`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.differential.harness import Bed, running_bed


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    with running_bed(tmp_path_factory.mktemp("differential")) as started:
        yield started
