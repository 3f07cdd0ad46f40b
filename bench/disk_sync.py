"""The disk's floor under a durable intent: one small record made durable, every 20 ms.

Run: ``.venv/bin/python bench/disk_sync.py [--dir DIR] [--count 150]``

The audit spool makes each intent durable with one ``write`` + ``fdatasync`` of ~1.1 KB
appended to its segment. This times that, and the ways around it a writer could take, on
the volume of ``--dir`` (default: a temporary directory on the disk, as the spool's
emptyDir): appending (the spool today), overwriting in place a pre-allocated file
(``posix_fallocate``) or a zero-filled one (no size or extent change to journal),
``O_DSYNC`` writes (no separate sync call), and ``O_DIRECT`` 4 KiB writes with and
without ``O_DSYNC`` (without it: the device's write, not durable past its volatile cache).
Printed: p50 and p90 of each, in microseconds (the ways take turns, so each sees the same
minutes). If every durable way costs about the same, the wait is the device's and no file
layout takes it off a strict intent.
"""

from __future__ import annotations

import argparse
import mmap
import os
import tempfile
import time
from pathlib import Path

RECORD = b"x" * 1100
SIZE = 4 << 20


def prepared(path: Path, how: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if how == "zero":
            os.write(fd, b"\0" * SIZE)
        elif how == "fallocate":
            os.posix_fallocate(fd, 0, SIZE)
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--count", type=int, default=150)
    args = ap.parse_args()
    aligned = mmap.mmap(-1, 4096)
    aligned.write(b"y" * 4096)

    def append_sync(fd: int, i: int) -> None:
        os.write(fd, RECORD)
        os.fdatasync(fd)

    def overwrite_sync(fd: int, i: int) -> None:
        os.pwrite(fd, RECORD, i * len(RECORD))
        os.fdatasync(fd)

    def overwrite_dsync(fd: int, i: int) -> None:
        os.pwrite(fd, RECORD, i * len(RECORD))

    def direct(fd: int, i: int) -> None:
        os.pwritev(fd, [aligned], i * 4096)

    ways = (
        ("append + fdatasync (the spool)", "none", os.O_APPEND | os.O_CREAT, append_sync),
        ("fallocated, overwrite + fdatasync", "fallocate", 0, overwrite_sync),
        ("zero-filled, overwrite + fdatasync", "zero", 0, overwrite_sync),
        ("zero-filled, O_DSYNC pwrite", "zero", os.O_DSYNC, overwrite_dsync),
        ("zero-filled, O_DIRECT 4 KiB", "zero", os.O_DIRECT, direct),
        ("zero-filled, O_DIRECT|O_DSYNC 4 KiB", "zero", os.O_DIRECT | os.O_DSYNC, direct),
    )
    with tempfile.TemporaryDirectory(prefix="hg-sync-", dir=args.dir) as tmp:
        print(
            f"{args.count} durable writes per way, round-robin, every 20 ms, in {tmp}, load "
            f"average {os.getloadavg()[0]:.1f}; microseconds"
        )
        fds = []
        for n, (_, how, flags, _) in enumerate(ways):
            path = Path(tmp) / f"{n}-{how}"
            if how != "none":
                prepared(path, how)
            fds.append(os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600))
        times: list[list[float]] = [[] for _ in ways]
        try:
            for i in range(args.count):
                for n, (_, _, _, step) in enumerate(ways):
                    t0 = time.perf_counter()
                    step(fds[n], i)
                    times[n].append((time.perf_counter() - t0) * 1e6)
                    time.sleep(0.02)
        finally:
            for fd in fds:
                os.close(fd)
        for (name, *_), xs in zip(ways, times, strict=True):
            xs.sort()
            print(f"  {name:40} p50 {xs[len(xs) // 2]:8.0f}   p90 {xs[int(len(xs) * 0.9)]:8.0f}")


if __name__ == "__main__":
    main()
