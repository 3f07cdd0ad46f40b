"""`haltgate audit ship --drain-seconds`: on SIGTERM the shipper empties the spool first
(in a pod the spool is an emptyDir that goes away with the pod)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.audit.conftest import AuditDatabase
from tests.audit.test_shipper import HALTGATE, REPO, fill, wait_for

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("drain", [0, 60])
def test_sigterm_drains_the_spool(tmp_path: Path, audit_db: AuditDatabase, drain: int) -> None:
    total = 400
    fill(tmp_path, total)
    # One record per transaction: the run loop is far from done when SIGTERM arrives.
    proc = subprocess.Popen(
        [
            *HALTGATE,
            "audit",
            "ship",
            "--spool",
            str(tmp_path),
            "--dsn",
            audit_db.writer,
            "--batch",
            "1",
            "--drain-seconds",
            str(drain),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: audit_db.count() >= 1, 60, "the shipper to start shipping")
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    if drain:
        assert audit_db.count() == total
        assert b"drained" in err
    else:
        assert audit_db.count() < total, "shipped everything before SIGTERM: make it bigger"
