"""The policies a replay may use, found by the digest the audit record names.

A record's ``replay.policy`` is the SHA-256 of the policy file the sidecar loaded (the
digest ``/status`` shows). :class:`PolicyStore` reads the files an operator passes
(``--policy FILE``), validates them as the sidecar does and answers by digest, so a
replay never runs a decision through a policy other than the one that made it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from haltgate.governance.engine.core import Engine
from haltgate.governance.engine.pricing import PriceTable, ShippedTable
from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.validation import policy_from_bytes, read_policy_file

__all__ = ["LoadedPolicy", "PolicyStore", "load_policy_bytes"]


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """One policy file: its digest, name and validated spec."""

    digest: str
    name: str
    source: str
    spec: GovernancePolicySpec


def load_policy_bytes(data: bytes, source: str) -> LoadedPolicy:
    """The one GovernancePolicy of a file's bytes (validated), with the bytes' digest.

    Raises :class:`PolicyFileError` naming the field of what is wrong."""
    doc = policy_from_bytes(data, source)
    return LoadedPolicy(
        hashlib.sha256(data).hexdigest(), doc.metadata.name or "?", source, doc.spec
    )


class PolicyStore:
    """Policies by digest, each with its budget engine built once."""

    def __init__(
        self, policies: Iterable[LoadedPolicy] = (), prices: ShippedTable | None = None
    ) -> None:
        self._by_digest = {p.digest: p for p in policies}
        self._prices = prices
        self._engines: dict[str, Engine] = {}

    @classmethod
    def from_files(
        cls, paths: Iterable[str | Path], prices: ShippedTable | None = None
    ) -> PolicyStore:
        """Read and validate every file (raises :class:`PolicyFileError`)."""
        loaded = []
        for path in paths:
            loaded.append(load_policy_bytes(read_policy_file(path), str(path)))
        return cls(loaded, prices)

    def __contains__(self, digest: object) -> bool:
        return digest in self._by_digest

    @property
    def digests(self) -> tuple[str, ...]:
        """The digests of the policies held."""
        return tuple(self._by_digest)

    def get(self, digest: str) -> LoadedPolicy | None:
        """The policy of that digest, or ``None``."""
        return self._by_digest.get(digest)

    def engine(self, digest: str) -> Engine | None:
        """The builtin budget engine of the policy of that digest (``None``: not held)."""
        engine = self._engines.get(digest)
        if engine is None:
            policy = self._by_digest.get(digest)
            if policy is None:
                return None
            engine = self._engines[digest] = Engine(
                policy.spec, PriceTable.for_policy(policy.spec.pricing, self._prices)
            )
        return engine
