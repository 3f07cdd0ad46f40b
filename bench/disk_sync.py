"""The disk's floor under a durable intent: one small record made durable, every 20 ms.

Run: ``.venv/bin/python bench/disk_sync.py [--dir DIR] [--count 150] [--only WORD ...]``

The audit spool makes each intent durable with one ``write`` + ``fdatasync`` of ~1.1 KB
appended to its segment. This times that, and the ways around it a writer could take, on
the volume of ``--dir`` (default: a temporary directory on the disk, as the spool's
emptyDir): appending (the spool today), overwriting in place a pre-allocated file
(``posix_fallocate``) or a zero-filled one (no size or extent change to journal),
``O_DSYNC`` writes (no separate sync call), ``O_DIRECT`` 4 KiB writes with and without
``O_DSYNC`` (without it: the device's write, not durable past its volatile cache), an
``fdatasync`` of a file with nothing to write (the device's cache flush alone), and the
spool's records appended through ``O_DIRECT|O_DSYNC`` as a segment would be (each commit
rewrites the file's last block from its aligned start: the old tail bytes, the new record,
zeros to the block's end) into a growing, a fallocated or a zero-filled file.

Printed per way: p50 and p90 latency and CPU time (of this thread, user + system) per
durable write in microseconds, the median over rounds of each way's write minus the
spool's write of the same round (paired: they ran next to each other), and the device
cache flushes the kernel issued per write (``/sys/block/<disk>/stat``, counted around each
write; other processes' flushes in that window count too). The ways take turns, so each
sees the same minutes. The device line says whether it has a volatile write cache and FUA:
without FUA every durable way is a write plus a cache flush, and if they all cost about
the same the wait is the device's and no file layout takes it off a strict intent.
"""

from __future__ import annotations

import argparse
import errno
import mmap
import os
import tempfile
import time
from collections.abc import Callable
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


def disk_dir(directory: Path) -> Path | None:
    """The sysfs directory of the whole disk holding ``directory`` (None: not a block
    device, e.g. tmpfs)."""
    st = os.stat(directory)
    node = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    if not node.exists():
        return None
    node = node.resolve()
    return node.parent if (node / "partition").exists() else node


def flushes(disk: Path | None) -> int:
    """Cache flushes the disk completed so far (-1 when the kernel does not say)."""
    if disk is None:
        return -1
    fields = (disk / "stat").read_text().split()
    return int(fields[15]) if len(fields) > 15 else -1


def device_line(disk: Path | None) -> str:
    if disk is None:
        return "device: none (not a block device)"
    queue = disk / "queue"

    def read(name: str) -> str:
        try:
            return (queue / name).read_text().strip()
        except OSError:
            return "?"

    return (
        f"device {disk.name}: write cache {read('write_cache')!r}, FUA {read('fua')}, "
        f"logical block {read('logical_block_size')} B"
    )


class TailBlock:
    """Appends records through ``O_DIRECT|O_DSYNC`` as the spool would: the file's last
    (partial) block is kept in an aligned buffer (anonymous mmap: page aligned) and each
    commit rewrites it from its aligned start, zero-padded to the block's end."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.buf = mmap.mmap(-1, 64 * 1024)
        self.end = 0  # bytes of records in the file

    def append(self, fd: int, record: bytes) -> None:
        base = self.end - self.end % self.block
        start = self.end - base
        stop = start + len(record)
        padded = -(-stop // self.block) * self.block
        self.buf[start:stop] = record
        self.buf[stop:padded] = bytes(padded - stop)
        os.pwritev(fd, [memoryview(self.buf)[:padded]], base)
        self.end += len(record)
        kept = self.end - self.end % self.block - base
        if kept:  # whole blocks written: the new tail block moves to the buffer's start
            self.buf[: padded - kept] = self.buf[kept:padded]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--count", type=int, default=150)
    ap.add_argument(
        "--only", action="append", default=[], help="run only ways whose name has this (repeat)"
    )
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

    def flush_only(fd: int, i: int) -> None:
        os.fdatasync(fd)  # nothing dirty: ext4 still sends the device a cache flush

    def tail(fd: int, i: int) -> None:
        tails[fd].append(fd, RECORD)

    direct_dsync = os.O_DIRECT | os.O_DSYNC
    ways: tuple[tuple[str, str, int, Callable[[int, int], None]], ...] = (
        ("append + fdatasync (the spool)", "none", os.O_APPEND | os.O_CREAT, append_sync),
        ("fallocated, overwrite + fdatasync", "fallocate", 0, overwrite_sync),
        ("zero-filled, overwrite + fdatasync", "zero", 0, overwrite_sync),
        ("zero-filled, O_DSYNC pwrite", "zero", os.O_DSYNC, overwrite_dsync),
        ("zero-filled, O_DIRECT 4 KiB", "zero", os.O_DIRECT, direct),
        ("clean file, fdatasync (the flush alone)", "zero", 0, flush_only),
        ("zero-filled, O_DIRECT|O_DSYNC 4 KiB", "zero", direct_dsync, direct),
        ("tail block O_DIRECT|O_DSYNC, growing", "none", direct_dsync | os.O_CREAT, tail),
        ("tail block O_DIRECT|O_DSYNC, fallocated", "fallocate", direct_dsync, tail),
        ("tail block O_DIRECT|O_DSYNC, zero-filled", "zero", direct_dsync, tail),
    )
    tails: dict[int, TailBlock] = {}
    with tempfile.TemporaryDirectory(prefix="hg-sync-", dir=args.dir) as tmp:
        disk = disk_dir(Path(tmp))
        block = os.statvfs(tmp).f_bsize
        print(
            f"{args.count} durable writes per way, round-robin, every 20 ms, in {tmp}, load "
            f"average {os.getloadavg()[0]:.1f}; {device_line(disk)}; fs block {block} B; "
            "microseconds"
        )
        fds: list[int] = []
        chosen = []
        for n, (name, how, flags, step) in enumerate(ways):
            if n and args.only and not any(word in name for word in args.only):
                continue  # (the spool's way always runs: the others are paired with it)
            path = Path(tmp) / f"{n}-{how}"
            if how != "none":
                prepared(path, how)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                print(f"  {name:42} refused: O_DIRECT not supported here ({e.strerror})")
                continue
            if step is tail:
                tails[fd] = TailBlock(block)
            fds.append(fd)
            chosen.append((name, step))
        times: list[list[float]] = [[] for _ in chosen]
        cpu = [0.0] * len(chosen)
        flushed = [0] * len(chosen)
        try:
            for i in range(args.count):
                for n, (_, step) in enumerate(chosen):
                    f0 = flushes(disk)
                    c0 = time.thread_time()
                    t0 = time.perf_counter()
                    step(fds[n], i)
                    times[n].append((time.perf_counter() - t0) * 1e6)
                    cpu[n] += time.thread_time() - c0
                    flushed[n] += flushes(disk) - f0
                    time.sleep(0.02)
        finally:
            for fd in fds:
                os.close(fd)
        spool = times[0]
        for n, ((name, _), xs) in enumerate(zip(chosen, times, strict=True)):
            # Paired with the spool's write of the same round (adjacent in time): the
            # median of the differences is steadier than a difference of medians.
            diffs = sorted(x - s for x, s in zip(xs, spool, strict=True))
            paired = f"{diffs[len(diffs) // 2]:+6.0f}" if n else "     -"
            xs = sorted(xs)
            per = f"{flushed[n] / args.count:5.2f}" if disk is not None else "  n/a"
            print(
                f"  {name:42} p50 {xs[len(xs) // 2]:6.0f}   p90 {xs[int(len(xs) * 0.9)]:6.0f}"
                f"   vs spool {paired}   cpu {cpu[n] / args.count * 1e6:4.0f}"
                f"   flushes/write {per}"
            )


if __name__ == "__main__":
    main()
