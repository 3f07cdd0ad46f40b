"""Fixtures of the boundary tests: namespaces, the rule set, the sidecar and agent UIDs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from haltgate.testbed import netns as harness

SIDECAR_UID = 17337
AGENT_UID = 1000


@pytest.fixture(scope="session")
def netns_available() -> None:
    """Skip (with the reason) where namespaces cannot be made; CI runs as root, so it runs."""
    reason = harness.skip_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def bare_netns(netns_available: None) -> Iterator[harness.Netns]:
    """One empty namespace with loopback up (for rule-set tests)."""
    ns = harness.Netns(f"hg-bare-{harness.free_tag()}")
    ns.delete()
    harness.run(["ip", "netns", "add", ns.name])
    ns.run(["ip", "link", "set", "lo", "up"])
    try:
        yield ns
    finally:
        ns.delete()
