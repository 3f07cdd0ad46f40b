"""``python -m tests.differential``: run the corpus once and print what each upstream did.

A table for people (the tests assert the same thing): per case and upstream ``agree``
(forwarded, same reading), ``refused <code>`` (nothing executed) or the divergences.
Exit status 1 when any case diverges.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.differential.corpus import CASES
from tests.differential.harness import UPSTREAMS, Request, running_bed


def main() -> int:
    diverging: dict[str, list[str]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="haltgate-differential-") as work,
        running_bed(Path(work)) as bed,
    ):
        for case in CASES:
            for upstream in UPSTREAMS:
                for proxy in (False, True):
                    request = Request(
                        f"{upstream}-{case.kind}",
                        case.method,
                        case.target,
                        case.body,
                        case.headers,
                        proxy=proxy,
                        chunked=case.chunked,
                    )
                    ex, found = bed.check(request)
                    where = f"{upstream}{' proxy' if proxy else ''}"
                    if found:
                        diverging.setdefault(case.name, []).append(where)
                        known = (
                            " (known, open)"
                            if case.open_divergence
                            and upstream in case.open_on
                            and ("proxy" if proxy else "alias") in case.open_forms
                            else ""
                        )
                        print(f"DIVERGES{known} {case.name} [{where}]: {request.describe()}")
                        for line in found:
                            print(f"    {line}")
                    else:
                        verdict = "agree" if ex.forwarded else f"refused {ex.refusal}"
                        print(f"ok       {case.name} [{where}]: {verdict}")
    pairs = sum(len(v) for v in diverging.values())
    print(
        f"\n{len(diverging)} of {len(CASES)} cases diverge ({pairs} of "
        f"{len(CASES) * len(UPSTREAMS) * 2} case x upstream x form runs)"
    )
    for name, ups in diverging.items():
        print(f"  {name}: {', '.join(ups)}")
    return 1 if diverging else 0


if __name__ == "__main__":
    sys.exit(main())
