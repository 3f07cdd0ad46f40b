"""A stand-in sidecar for crash tests: append records in concurrent bursts, report progress.

``python -m tests.audit.burst SPOOL COUNT [RUN]`` prints ``durable <seq>`` after each burst,
meaning every record up to that sequence number has returned from ``intent()``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from haltgate.governance.audit import SpoolAuditSink
from tests.audit.helpers import make_record

BURST = 50


async def main(spool: Path, count: int, run: str) -> None:
    sink = SpoolAuditSink(spool, segment_bytes=64 * 1024, max_bytes=64 * 1024 * 1024)
    chain = f"team-a/agent-0/{run}"
    done = 0
    while done < count:
        n = min(BURST, count - done)
        await asyncio.gather(*(sink.intent(make_record(done + i, run=run)) for i in range(n)))
        done += n
        print(f"durable {sink.chain_heads[chain].seq}", flush=True)
    await sink.close()


if __name__ == "__main__":
    asyncio.run(
        main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "run-1")
    )
