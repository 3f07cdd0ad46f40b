"""Fixtures of the drift tests: the sidecar tests' stand-ins and sidecar factory, reused."""

from __future__ import annotations

from tests.sidecar.conftest import (  # noqa: F401  (fixtures re-exported for pytest)
    http_server,
    sidecar_factory,
    standins,
)
