"""`haltgate audit cost` counts calls and refusals the way the sidecar writes them.

The reported symptom: 21 records read as 8 calls / 0 denied (only intents counted, and the
sidecar writes intents as allow), later 13 / 5 (correct)."""

from __future__ import annotations

import psycopg
import pytest

from haltgate.governance.audit.query import RecordFilter, cost_by_agent
from haltgate.governance.audit.record import Chainer
from tests.audit.conftest import AuditDatabase
from tests.audit.helpers import BASE_TIME, insert_lines, make_record

pytestmark = pytest.mark.postgres

ALLOW = {"decision": "allow", "failure_type": None, "code": None}


def test_forwarded_and_refused_calls(audit_db: AuditDatabase) -> None:
    chainer = Chainer()
    lines = []
    for i in range(8):  # forwarded: intent (allow) + outcome with the upstream's status
        lines.append(chainer.seal(make_record(2 * i, time=BASE_TIME + i, **ALLOW))[1])
        lines.append(
            chainer.seal(
                make_record(
                    2 * i + 1, phase="outcome", status=200, time=BASE_TIME + i + 0.5, **ALLOW
                )
            )[1]
        )
    for i in range(5):  # refused before forwarding: one outcome, deny, no status
        lines.append(
            chainer.seal(
                make_record(
                    100 + i,
                    phase="outcome",
                    time=BASE_TIME + 20 + i,
                    decision="deny",
                    failure_type="EXHAUSTION",
                    code="tokens_exhausted",
                    cost_usd=None,
                    usage=None,
                )
            )[1]
        )
    assert len(lines) == 21
    with psycopg.connect(audit_db.writer) as conn:
        insert_lines(conn, lines)
    (agent,) = cost_by_agent(audit_db.reader, RecordFilter())
    assert (agent["calls"], agent["denied"]) == (13, 5)
    assert agent["cost_usd"] == pytest.approx(8 * 0.00042)
