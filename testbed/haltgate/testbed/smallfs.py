"""A small real filesystem for disk-full tests: a size-limited tmpfs mounted (as root).

``ENOSPC`` here comes from the kernel, not from a mock: writes, fsyncs, renames and file
creations fail exactly as they do on a full ``emptyDir``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from haltgate.testbed.errors import TestbedError

__all__ = ["fill", "small_volume"]


@contextlib.contextmanager
def small_volume(path: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of ``size_bytes`` at ``path`` for the duration of the block."""
    if os.geteuid() != 0:
        raise TestbedError("mounting a small tmpfs needs root (CI runs these tests as root)")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        raise TestbedError(f"mount tmpfs at {path} failed: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(directory: Path, name: str = "filler") -> Path:
    """Write a file in ``directory`` until the volume is full; return its path."""
    path = directory / name
    block = b"\0" * 65536
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(1 << 20):  # bounded: 64 GiB at most
            try:
                os.write(fd, block)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
        for _ in range(1 << 16):  # the last partial block, byte-sized pieces
            try:
                os.write(fd, b"\0" * 512)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)
    return path
