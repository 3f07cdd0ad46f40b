"""The spool's payload bound is measured only for records longer than it: what is written
is exactly what fitting every record first (the former way) would write."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from haltgate.governance.audit import SpoolAuditSink
from haltgate.governance.audit.fit import MAX_TARGET_CHARS, fit_record
from haltgate.governance.audit.record import Chainer
from haltgate.governance.audit.spool import iter_frames, list_segments, segment_path
from haltgate.governance.audit.spool_settings import SpoolSettings
from tests.audit.helpers import make_record

LIMIT = 4096


def _records() -> list:
    text = "x" * 100
    return [
        make_record(0, payload={"messages": [text] * 3}),  # small: fits
        # the record is longer than the bound, its payload is not: kept whole
        make_record(1, payload={"m": "y" * (LIMIT - 200)}, message="z" * 3000),
        # a payload over the bound: replaced by the marker
        make_record(2, payload={"m": "y" * (LIMIT + 10)}),
        make_record(3, payload="s" * (LIMIT + 10)),  # a long string payload
        make_record(4, target="POST " + "t" * (MAX_TARGET_CHARS + 50)),  # clipped target
        make_record(5, payload=None),
    ]


@pytest.mark.parametrize("inline", [True, False])
async def test_written_records_are_those_fitted_before_sealing(
    tmp_path: Path, inline: bool
) -> None:
    settings = SpoolSettings(
        directory=tmp_path, max_payload_bytes=LIMIT, inline_max_seconds=1.0 if inline else 0
    )
    sink = SpoolAuditSink(settings=settings)
    records = _records()
    for record in records:
        await sink.intent(record)
    await sink.close()
    lines = []
    for number in list_segments(tmp_path):
        frames, _, _ = iter_frames(segment_path(tmp_path, number).read_bytes(), number)
        lines.extend(f.data for f in frames if not f.is_checkpoint)
    chainer = Chainer()
    expected = [chainer.seal(fit_record(r, LIMIT))[1] for r in records]
    assert [bytes(x) for x in lines] == expected
    docs = [orjson.loads(x) for x in lines]
    assert docs[1]["payload"] == {"m": "y" * (LIMIT - 200)}
    assert docs[2]["payload"]["truncated"] is True and docs[3]["payload"]["truncated"] is True
    assert docs[4]["target"].endswith("chars]")
