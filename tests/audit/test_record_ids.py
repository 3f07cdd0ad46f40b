"""Audit record ids: random version-4 UUIDs, unique, also across forked processes."""

from __future__ import annotations

import os
import uuid

from haltgate.governance.audit.record import AuditRecord


def _id() -> str:
    return AuditRecord(decision_id="d", time=1.0, phase="intent").record_id


def test_record_ids_are_rfc4122_version_4_and_unique() -> None:
    ids = [_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:500]:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == value


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next id and leave at once
        os.write(write, _id().encode())
        os._exit(0)
    os.close(write)
    try:
        child = os.read(read, 64).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert child and child != _id()
