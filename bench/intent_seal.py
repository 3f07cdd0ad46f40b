"""Where a call's intent record costs its time, cold and warm: built, fitted, sealed, framed.

Run: ``.venv/bin/python bench/intent_seal.py [--calls 200]``

A sidecar runs in this process (``bench/sidecar_stages.py``'s capture: the policy of
``bench/sidecar_overhead.py``, spool in /dev/shm), serves a few chat completions, and the
last call is kept. Each step of its intent record (what ``DecisionAudit.audit_intent`` and
``SpoolWriter._queue`` run before the write) is then timed alone, cold (right after 32 MiB
were written over: what a call every 5-20 ms between other processes' work sees) and warm,
median thread CPU time of ``--calls`` runs; and the whole (record built, fitted, sealed,
framed) in sequence.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import sidecar_overhead as overhead  # noqa: E402
import sidecar_stages as stages  # noqa: E402


async def run(args: argparse.Namespace, tmp: Path, up_port: int) -> None:
    from haltgate.governance.audit import fit, record, spool
    from haltgate.sidecar.replayinputs import replay_inputs

    sidecar, call, _, _ = await stages.capture(tmp, up_port, False)
    try:
        p = sidecar.pipeline
        writer = sidecar.audit._writer
        chainer = writer.chainer
        limit = writer.settings.max_payload_bytes
        intent = p._record(call, "intent", decision="allow")
        chain = record.chain_id_for(intent)
        head = chainer.head(chain)
        seq, prev = (head.seq + 1, head.hash) if head else (1, record.GENESIS_HASH)
        line, prefix, _, new = chainer.seal_row(intent, max_bytes=1 << 24)
        # The tree's serialising step (one pass since intentline; two halves before).
        serialised = getattr(record, "_unhashed", None) or record._serialised

        def build() -> Any:
            call.scrub = None
            return p._record(call, "intent", decision="allow")

        def whole() -> Any:
            r = fit.fit_fields(build())
            ln, pre, _, h = chainer.seal_row(
                r, max_bytes=1 << 24, refit=writer._fit_payload, refit_above=limit
            )
            return spool.encode_row_frame(pre, h.hash, ln, r.time)

        steps: dict[str, Any] = {
            "record built (_record)": build,
            "  replay inputs": lambda: replay_inputs(call, "intent", None),
            "  AuditRecord(...) of the built fields": lambda: dataclasses.replace(intent),
            "fit_fields": lambda: fit.fit_fields(intent),
            "seal_row (all of sealing)": lambda: chainer.seal_row(
                intent, max_bytes=1 << 24, refit=writer._fit_payload, refit_above=limit
            ),
            "  row_head": lambda: record.row_head(intent, chain, seq, prev),
            "  JSON (one dict, one orjson call)": lambda: serialised(intent, chain, seq, prev),
            "encode_row_frame": lambda: spool.encode_row_frame(prefix, new.hash, line, 0.0),
            "whole: built + fit + sealed + framed": whole,
        }
        print(f"intent line {len(line)} bytes, row head {len(prefix)} bytes")
        print(f"{'cold us':>9} {'warm us':>9}  step (median of {args.calls})")
        for name, fn in steps.items():
            if args.only not in name:
                continue
            cold = stages.cold_us(fn, args.calls)
            warm = stages.cold_us(fn, args.calls, cold=False)
            print(f"{cold:9.1f} {warm:9.1f}  {name}")
    finally:
        await sidecar.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    overhead.run_with_standin_llm(
        lambda tmp, port: run(args, tmp, port), prefix="hg-intent-", tmp_dir="/dev/shm"
    )


if __name__ == "__main__":
    main()
