"""Fixtures of the pool tests: a fresh database per test module with the pool schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.pool.helpers import fresh_pool_database


@pytest.fixture(scope="module")
def pool_dsn(postgres_dsn: str) -> Iterator[str]:
    """A new database with the pool schema applied (dropped afterwards)."""
    with fresh_pool_database(postgres_dsn, "pool_") as dsn:
        yield dsn


@pytest.fixture
def pool_name() -> str:
    """A pool key unique to the test."""
    return "ns/pool-" + uuid.uuid4().hex[:8]
